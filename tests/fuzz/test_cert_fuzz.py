"""Forwarded client certificates under hostile input (RFC 8705 §2, header mode): the header a
trusted proxy sets (`TOKENSVC_CLIENT_CERT_HEADER`, URL-encoded PEM) truncated, with a byte
flipped, text inserted, the DER inside a valid PEM envelope mutated, double-encoded, raw
bytes that are not UTF-8, oversized, or sent twice; for a `tls_client_auth`, a
`self_signed_tls_client_auth` and a `client_secret_basic` client. The answer is tokens for a
good certificate and a well-formed `invalid_client` / `invalid_request` otherwise — never a
5xx (the stack checks its log for tracebacks and 5xx on the way out)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from multidict import CIMultiDict

from tests.certificates import Issued, ca, leaf, name, pem_of
from tests.fuzz.conftest import _urls, fuzz
from tests.fuzz.expect import token_reply
from tests.fuzz.rawhttp import request_bytes, roundtrip
from tests.fuzz.stack import Stack, running_stack
from tests.fuzz.strategies import FORM, TEXT, Reply
from tokensvc.models import Credentials

HEADER = "X-Client-Cert"
DNS = "fuzz.payments.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Issued, dict[str, Issued]]:
    directory = tmp_path_factory.mktemp("fuzz-pki")
    root = ca("Fuzz CA")
    (directory / "ca.pem").write_text(root.pem)
    certs = {
        "good": leaf(root, "fuzz-client", dns=(DNS,)),
        "self": leaf(None, "fuzz-self"),
        "other": leaf(ca("Elsewhere"), "fuzz-client", dns=(DNS,)),
    }
    return directory / "ca.pem", root, certs


@pytest.fixture(scope="module")
def cert_stack(
    request: pytest.FixtureRequest,
    backend: str,
    log_sink: Any,
    pki: tuple[Path, Issued, dict[str, Issued]],
) -> Iterator[Stack]:
    settings = {
        "client_cert_header": HEADER,
        "trusted_proxies": ("127.0.0.1/32",),
        "tls_client_ca_file": str(pki[0]),
    }
    with running_stack(
        backend, _urls(request, backend, "certs"), log_sink=log_sink, settings=settings
    ) as stack:
        yield stack


def _broken_extension(root: Issued) -> bytes:
    """A certificate of the CA whose SAN extension does not parse (cryptography parses
    extensions lazily, so this passes loading and fails later)."""
    key = leaf(None).key
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("broken"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(root.cert.not_valid_before_utc)
        .not_valid_after(root.cert.not_valid_after_utc)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x01"),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


MUTATIONS = (
    "valid",
    "truncate",
    "flip",
    "insert",
    "der",
    "garbage",
    "bytes",
    "raw_pem",
    "double",
    "long",
    "twice",
    "broken",
    "empty",
)


@st.composite
def header_values(draw: st.DrawFn, certs: list[Issued], broken: bytes) -> list[bytes]:
    """One or two header lines: a real certificate, or one broken in some way."""
    cert = draw(st.sampled_from(certs))
    good = cert.header.encode()
    how = draw(st.sampled_from(MUTATIONS))
    if how == "valid":
        value = good
    elif how == "truncate":
        value = good[: draw(st.integers(0, len(good) - 1))]
    elif how == "flip":
        i = draw(st.integers(0, len(good) - 1))
        value = good[:i] + bytes([draw(st.integers(0x20, 0x7E))]) + good[i + 1 :]
    elif how == "insert":
        i = draw(st.integers(0, len(good)))
        value = good[:i] + draw(TEXT).encode("utf-8", "surrogatepass") + good[i:]
    elif how == "der":  # a few bytes of the DER changed or the DER cut short, PEM intact
        der = bytearray(cert.der)
        for _ in range(draw(st.integers(1, 4))):
            der[draw(st.integers(0, len(der) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            der = der[: draw(st.integers(1, len(der)))]
        value = quote(pem_of(bytes(der)), safe="").encode()
    elif how == "garbage":
        value = draw(TEXT).encode("utf-8", "surrogatepass")
    elif how == "bytes":
        value = draw(st.binary(max_size=300))
    elif how == "raw_pem":  # not URL-encoded: newlines as spaces, or as literal "\n"
        value = cert.pem.replace("\n", draw(st.sampled_from((" ", "\\n", "\t", "")))).encode()
    elif how == "double":
        value = quote(cert.header, safe="").encode()
    elif how == "long":
        value = (good * (8000 // len(good) + 1))[: draw(st.integers(len(good), 8000))]
    elif how == "broken":
        value = quote(pem_of(broken), safe="").encode()
    elif how == "empty":
        value = draw(st.sampled_from((b"", b" ", b"(null)", b"-")))
    else:
        return [good, draw(st.sampled_from((good, b"", b"x")))]
    # Bytes that would end the header line are the HTTP parser's business, not this fuzz's.
    return [value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")]


def test_hostile_certificate_headers_get_oauth_errors_never_a_server_error(
    cert_stack: Stack, pki: tuple[Path, Issued, dict[str, Issued]]
) -> None:
    stack, h = cert_stack, cert_stack.harness
    _, root, certs = pki
    for issued in certs.values():
        h.remember(*issued.secret_parts)

    async def register() -> dict[str, tuple[str, str | None]]:
        tls, _ = await h.client(
            grant_types=["client_credentials"],
            auth_method="tls_client_auth",
            credentials=Credentials(tls_san_dns=DNS),
        )
        pem = (
            certs["self"]
            .cert.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        jwks = {"keys": [ECKey.import_key(pem).as_dict(private=False)]}
        self_signed, _ = await h.client(
            grant_types=["client_credentials"],
            auth_method="self_signed_tls_client_auth",
            credentials=Credentials(jwks=jwks),
        )
        basic, secret = await h.client(grant_types=["client_credentials"])
        return {
            "tls": (tls.client_id, None),
            "self": (self_signed.client_id, None),
            "basic": (basic.client_id, secret),
        }

    clients = stack.run(register())
    broken = _broken_extension(root)

    @st.composite
    def requests(draw: st.DrawFn) -> bytes:
        client_id, secret = clients[draw(st.sampled_from(sorted(clients)))]
        headers: list[tuple[str, str | bytes]] = [("Content-Type", FORM)]
        body = b"grant_type=client_credentials"
        if secret is None:
            body += b"&client_id=" + client_id.encode()
        else:
            raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            headers.append(("Authorization", f"Basic {raw}"))
        for value in draw(header_values(list(certs.values()), broken)):
            headers.append((HEADER, value))
        return request_bytes("POST", "/token", headers, body)

    outcomes: set[str | None] = set()

    @fuzz(examples=200)
    @given(raw=requests())
    def probe(raw: bytes) -> None:
        got = stack.run(roundtrip(h.public_url, raw))
        reply = Reply("POST", got.status, CIMultiDict(got.headers), got.body)
        if got.status == 200:
            h.remember(reply.body.decode())
        error = token_reply(reply)
        assert error in (None, "invalid_client", "invalid_request", "slow_down"), reply
        outcomes.add(error)

    probe()
    # Both sides were reached: good certificates got tokens, broken ones were refused.
    assert None in outcomes and "invalid_request" in outcomes, outcomes
    assert "invalid_client" in outcomes, outcomes
