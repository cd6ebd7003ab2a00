"""Mutual TLS (RFC 8705) end to end, over real TLS on loopback with real certificates.

* direct TLS: the public listener serves HTTPS and asks for client certificates;
  `tls_client_auth` by subject DN, DNS SAN and URI SAN (SPIFFE); certificate-bound tokens
  (`cnf.x5t#S256`) for any method; public clients' refresh tokens bound to the certificate;
  `/introspect` and `/userinfo`;
* header mode: a trusted proxy forwards the certificate (URL-encoded PEM); the header from
  anyone else is ignored and logged once; a malformed one is a 4xx;
* both backends (memory, Redis + Postgres), so the stored refresh binding is exercised on each.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from multidict import CIMultiDict

from tests.certificates import Issued, ca, client_context, leaf, name
from tests.harness import Harness, Reply
from tests.integration.conftest import ServiceFactory
from tokensvc.models import Credentials

HEADER = "X-Client-Cert"
DN = "CN=payments-api,O=Example\\, Inc,C=DE"
DNS = "api.payments.example"
SPIFFE = "spiffe://example.org/ns/payments/sa/api"


@dataclass
class PKI:
    directory: Path
    ca_file: Path
    server_ca_file: Path
    server: tuple[Path, Path]
    certs: dict[str, Issued] = field(default_factory=dict)
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def add(self, label: str, issued: Issued) -> None:
        self.certs[label] = issued
        self.files[label] = issued.write(self.directory, label)

    def context(self, label: str | None) -> ssl.SSLContext:
        return client_context(self.server_ca_file, self.files[label] if label else None)

    def secrets(self) -> set[str]:
        return set().union(*(c.secret_parts for c in self.certs.values()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    client_ca, other_ca, server_ca = ca("Client CA"), ca("Other CA"), ca("Server CA")
    (directory / "client-ca.pem").write_text(client_ca.pem)
    (directory / "server-ca.pem").write_text(server_ca.pem)
    server = leaf(server_ca, "127.0.0.1", ips=("127.0.0.1",), eku=ExtendedKeyUsageOID.SERVER_AUTH)
    pki = PKI(
        directory,
        directory / "client-ca.pem",
        directory / "server-ca.pem",
        server.write(directory, "server"),
    )
    dn_subject = name("payments-api", org="Example, Inc")
    pki.add("dn", leaf(client_ca, subject=dn_subject))
    pki.add("dns", leaf(client_ca, "dns-client", dns=("other.example", DNS.upper())))
    pki.add("uri", leaf(client_ca, "spiffe-client", uris=(SPIFFE,)))
    pki.add("other_ca", leaf(other_ca, subject=dn_subject, dns=(DNS,), uris=(SPIFFE,)))
    pki.add("expired", leaf(client_ca, subject=dn_subject, days=(-30, -1)))
    pki.add("self", leaf(None, "self-signed"))
    pki.add("self_expired", leaf(None, "self-signed-old", days=(-30, -1)))
    pki.add("app", leaf(client_ca, "mobile-app"))
    pki.add("app2", leaf(client_ca, "mobile-app-2"))
    return pki


async def direct_tls(make_harness: ServiceFactory, pki: PKI) -> Harness:
    h: Harness = await make_harness(
        tls_cert_file=str(pki.server[0]),
        tls_key_file=str(pki.server[1]),
        tls_client_ca_file=str(pki.ca_file),
    )
    h.remember(*pki.secrets())
    assert h.public_url.startswith("https://")
    return h


async def header_mode(make_harness: ServiceFactory, pki: PKI, proxies: str) -> Harness:
    h: Harness = await make_harness(
        client_cert_header=HEADER,
        trusted_proxies=(proxies,),
        tls_client_ca_file=str(pki.ca_file),
    )
    h.remember(*pki.secrets())
    return h


async def post(
    h: Harness,
    data: dict[str, str],
    *,
    tls: ssl.SSLContext | None = None,
    path: str = "/token",
    basic: tuple[str, str] | None = None,
    headers: dict[str, str] | CIMultiDict[str] | None = None,
) -> Reply:
    sent = CIMultiDict(headers or {})
    if basic is not None:
        raw = f"{basic[0]}:{basic[1]}".encode()  # ids and secrets need no form-encoding
        sent["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    async with h.http.post(h.public_url + path, data=data, ssl=tls or False, headers=sent) as resp:
        body = await resp.json(content_type=None)
        if isinstance(body, dict):
            h.remember(body.get("access_token"), body.get("refresh_token"), body.get("id_token"))
        return Reply(resp.status, resp.headers, body)


async def verified(h: Harness, pki: PKI, token: str) -> dict[str, Any]:
    """The access token's claims, its signature checked against the JWKS fetched over TLS."""
    async with h.http.get(h.public_url + "/jwks.json", ssl=pki.context(None)) as resp:
        keys = KeySet.import_key_set(await resp.json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    return dict(decoded.claims)


def claims(token: str) -> dict[str, Any]:
    """The access token's claims (`Harness.verify` checks signatures where it matters)."""
    payload = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def tls_client(h: Harness, **credentials: str) -> str:
    client, _ = await h.client(
        grant_types=["client_credentials"],
        auth_method="tls_client_auth",
        credentials=Credentials(**credentials),
        scope_list=["api:read"],
    )
    return client.client_id


CC = {"grant_type": "client_credentials"}


# ------------------------------------------------------------------------- direct TLS


@pytest.mark.parametrize(
    ("label", "credentials"),
    [
        ("dn", {"tls_subject_dn": DN}),
        # The same DN written loosely: keywords in lower case, spaces after the commas.
        ("dn", {"tls_subject_dn": "cn=payments-api, o=Example\\, Inc, c=DE"}),
        ("dns", {"tls_san_dns": DNS}),
        ("uri", {"tls_san_uri": SPIFFE}),
    ],
)
async def test_tls_client_auth_over_direct_tls_gets_a_certificate_bound_token(
    make_harness: ServiceFactory, pki: PKI, label: str, credentials: dict[str, str]
) -> None:
    h = await direct_tls(make_harness, pki)
    client_id = await tls_client(h, **credentials)
    reply = await post(h, {**CC, "client_id": client_id}, tls=pki.context(label))
    assert reply.status == 200, reply.body
    token = reply.body["access_token"]
    checked = await verified(h, pki, token)
    assert checked["client_id"] == client_id
    assert checked["cnf"] == {"x5t#S256": pki.certs[label].x5t}
    assert reply.body["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("label", "credentials"),
    [
        ("dn", {"tls_subject_dn": "CN=payments-api,O=Example\\, Inc,C=FR"}),
        ("dn", {"tls_subject_dn": "CN=Payments-API,O=Example\\, Inc,C=DE"}),  # case matters
        ("dn", {"tls_subject_dn": "O=Example\\, Inc,C=DE"}),  # a prefix is not a match
        ("dns", {"tls_san_dns": "api.example"}),
        ("dns", {"tls_san_dns": "*.payments.example"}),
        ("uri", {"tls_san_uri": SPIFFE + "/x"}),
        ("uri", {"tls_san_uri": SPIFFE.upper()}),
        ("uri", {"tls_subject_dn": DN}),  # the right CA, another name
    ],
)
async def test_a_certificate_with_another_name_is_invalid_client(
    make_harness: ServiceFactory, pki: PKI, label: str, credentials: dict[str, str]
) -> None:
    h = await direct_tls(make_harness, pki)
    client_id = await tls_client(h, **credentials)
    reply = await post(h, {**CC, "client_id": client_id}, tls=pki.context(label))
    assert reply.status == 401, reply.body
    assert reply.body["error"] == "invalid_client"


async def test_a_tls_client_without_a_certificate_is_invalid_client(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await direct_tls(make_harness, pki)
    client_id = await tls_client(h, tls_subject_dn=DN)
    reply = await post(h, {**CC, "client_id": client_id}, tls=pki.context(None))
    assert reply.status == 401 and reply.body["error"] == "invalid_client", reply.body
    assert "certificate" in reply.body["error_description"]


@pytest.mark.parametrize("label", ["other_ca", "expired", "self"])
async def test_direct_tls_refuses_unverifiable_certificates_in_the_handshake(
    make_harness: ServiceFactory, pki: PKI, label: str, log_sink: Any
) -> None:
    """Python's ssl verifies every certificate it asks for: another CA's, an expired one and a
    self-signed one end the connection before any HTTP (README: self-signed clients come
    through a proxy). The service logs no traceback for it."""
    h = await direct_tls(make_harness, pki)
    mark = log_sink.mark()
    client_id = await tls_client(h, tls_subject_dn=DN)
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await post(h, {**CC, "client_id": client_id}, tls=pki.context(label))
    # The listener still serves everyone else.
    ok = await post(h, {**CC, "client_id": client_id}, tls=pki.context("dn"))
    assert ok.status == 200, ok.body
    assert not [e for e in log_sink.events(mark) if "exception" in e]


async def test_any_method_with_a_certificate_gets_cnf_and_without_one_none(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await direct_tls(make_harness, pki)
    client, secret = await h.client(grant_types=["client_credentials"], scope_list=["api:read"])
    assert client.auth_method == "client_secret_basic" and secret is not None
    bound = await post(h, CC, tls=pki.context("app"), basic=(client.client_id, secret))
    assert bound.status == 200, bound.body
    assert claims(bound.body["access_token"])["cnf"] == {"x5t#S256": pki.certs["app"].x5t}
    plain = await post(h, CC, tls=pki.context(None), basic=(client.client_id, secret))
    assert plain.status == 200, plain.body
    assert "cnf" not in claims(plain.body["access_token"])


async def test_introspection_returns_cnf(make_harness: ServiceFactory, pki: PKI) -> None:
    h = await direct_tls(make_harness, pki)
    client_id = await tls_client(h, tls_san_uri=SPIFFE)
    token = (await post(h, {**CC, "client_id": client_id}, tls=pki.context("uri"))).body[
        "access_token"
    ]
    rs, rs_secret = await h.client(grant_types=["client_credentials"])
    assert rs_secret is not None
    seen = await post(
        h,
        {"token": token},
        path="/introspect",
        tls=pki.context(None),
        basic=(rs.client_id, rs_secret),
    )
    assert seen.status == 200 and seen.body["active"] is True, seen.body
    assert seen.body["cnf"] == {"x5t#S256": pki.certs["uri"].x5t}
    # A tls_client_auth client may introspect too, authenticated by its certificate.
    own = await post(
        h, {"token": token, "client_id": client_id}, path="/introspect", tls=pki.context("uri")
    )
    assert own.status == 200 and own.body["cnf"] == seen.body["cnf"], own.body


async def test_a_public_clients_refresh_token_is_bound_to_its_certificate(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await direct_tls(make_harness, pki)
    app, _ = await h.client(public=True, grant_types=["authorization_code", "refresh_token"])
    code, verifier = await h.mint_code(app)
    assert verifier is not None
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uris[0],
        "code_verifier": verifier,
        "client_id": app.client_id,
    }
    first = await post(h, exchange, tls=pki.context("app"))
    assert first.status == 200, first.body
    x5t = pki.certs["app"].x5t
    assert claims(first.body["access_token"])["cnf"] == {"x5t#S256": x5t}
    refresh = {"grant_type": "refresh_token", "client_id": app.client_id}

    # Another certificate, or none: invalid_grant, and the token stays usable.
    for other in ("app2", None):
        refused = await post(
            h, {**refresh, "refresh_token": first.body["refresh_token"]}, tls=pki.context(other)
        )
        assert refused.status == 400 and refused.body["error"] == "invalid_grant", refused.body
        assert "certificate" in refused.body["error_description"]

    second = await post(
        h, {**refresh, "refresh_token": first.body["refresh_token"]}, tls=pki.context("app")
    )
    assert second.status == 200, second.body
    assert claims(second.body["access_token"])["cnf"] == {"x5t#S256": x5t}
    # A repeat within the grace window needs the certificate too.
    repeat = {**refresh, "refresh_token": first.body["refresh_token"]}
    stolen = await post(h, repeat, tls=pki.context("app2"))
    assert stolen.status == 400 and stolen.body["error"] == "invalid_grant", stolen.body
    again = await post(h, repeat, tls=pki.context("app"))
    assert again.status == 200 and again.body == second.body, again.body
    # The successor is bound as well.
    third = await post(
        h, {**refresh, "refresh_token": second.body["refresh_token"]}, tls=pki.context(None)
    )
    assert third.status == 400 and third.body["error"] == "invalid_grant", third.body


async def test_a_confidential_clients_refresh_token_is_not_bound(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    """RFC 8705 §4: a confidential client's refresh tokens are bound to its authentication;
    its access tokens carry the certificate of the request that got them."""
    h = await direct_tls(make_harness, pki)
    client, secret = await h.client()
    assert secret is not None
    code, verifier = await h.mint_code(client)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uris[0],
        "code_verifier": verifier or "",
    }
    first = await post(h, exchange, tls=pki.context("app"), basic=(client.client_id, secret))
    assert first.status == 200, first.body
    later = await post(
        h,
        {"grant_type": "refresh_token", "refresh_token": first.body["refresh_token"]},
        tls=pki.context(None),
        basic=(client.client_id, secret),
    )
    assert later.status == 200, later.body
    assert "cnf" not in claims(later.body["access_token"])


async def test_userinfo_needs_the_certificate_of_a_bound_token(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await direct_tls(make_harness, pki)
    client, secret = await h.client()
    assert secret is not None
    code, verifier = await h.mint_code(client)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uris[0],
        "code_verifier": verifier or "",
    }
    tokens = await post(h, exchange, tls=pki.context("app"), basic=(client.client_id, secret))
    bearer = {"Authorization": f"Bearer {tokens.body['access_token']}"}
    for label, status in (("app", 200), ("app2", 401), (None, 401)):
        async with h.http.get(
            h.public_url + "/userinfo", headers=bearer, ssl=pki.context(label)
        ) as resp:
            assert resp.status == status, (label, await resp.text())
            if status == 401:
                assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_discovery_says_tokens_are_certificate_bound(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await direct_tls(make_harness, pki)
    async with h.http.get(
        h.public_url + "/.well-known/openid-configuration", ssl=pki.context(None)
    ) as resp:
        meta = await resp.json()
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    methods = meta["token_endpoint_auth_methods_supported"]
    assert "tls_client_auth" in methods and "self_signed_tls_client_auth" in methods


# ------------------------------------------------------------------------- header mode


async def test_a_trusted_proxy_forwards_the_certificate(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    assert h.public_url.startswith("http://")
    for label, credentials in (
        ("dn", {"tls_subject_dn": DN}),
        ("dns", {"tls_san_dns": DNS}),
        ("uri", {"tls_san_uri": SPIFFE}),
    ):
        client_id = await tls_client(h, **credentials)
        reply = await post(
            h, {**CC, "client_id": client_id}, headers={HEADER: pki.certs[label].header}
        )
        assert reply.status == 200, (label, reply.body)
        assert claims(reply.body["access_token"])["cnf"] == {"x5t#S256": pki.certs[label].x5t}


@pytest.mark.parametrize("label", ["other_ca", "expired", "self"])
async def test_through_a_proxy_the_chain_is_checked_here(
    make_harness: ServiceFactory, pki: PKI, label: str
) -> None:
    """The proxy may ask for certificates without verifying them (`ssl_verify_client
    optional_no_ca`): the service verifies the chain itself, so another CA's certificate with
    the right names, an expired one, or a self-signed one is invalid_client."""
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    client_id = await tls_client(h, tls_san_uri=SPIFFE)
    reply = await post(h, {**CC, "client_id": client_id}, headers={HEADER: pki.certs[label].header})
    assert reply.status == 401 and reply.body["error"] == "invalid_client", reply.body


def _jwks_of(issued: Issued) -> dict[str, Any]:
    pem = issued.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"keys": [ECKey.import_key(pem).as_dict(private=False)]}


async def test_self_signed_tls_client_auth_through_a_proxy(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    other_key = ECKey.generate_key("P-256").as_dict(private=False)
    jwks = {
        "keys": [
            other_key,
            *_jwks_of(pki.certs["self"])["keys"],
            *_jwks_of(pki.certs["self_expired"])["keys"],
        ]
    }
    client, _ = await h.client(
        grant_types=["client_credentials"],
        auth_method="self_signed_tls_client_auth",
        credentials=Credentials(jwks=jwks),
    )
    form = {**CC, "client_id": client.client_id}
    ok = await post(h, form, headers={HEADER: pki.certs["self"].header})
    assert ok.status == 200, ok.body
    token = ok.body["access_token"]
    await h.verify(token, typ="at+jwt", client_id=client.client_id)
    assert claims(token)["cnf"] == {"x5t#S256": pki.certs["self"].x5t}
    # Another key (even one with a certificate from the trusted CA), an expired certificate
    # of a registered key, or no certificate: invalid_client.
    for label in ("app", "self_expired", None):
        headers = {HEADER: pki.certs[label].header} if label else {}
        refused = await post(h, form, headers=headers)
        assert refused.status == 401, (label, refused.body)
        assert refused.body["error"] == "invalid_client", (label, refused.body)


async def test_self_signed_with_a_jwks_uri_is_refused_clearly(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    client, _ = await h.client(
        grant_types=["client_credentials"],
        auth_method="self_signed_tls_client_auth",
        credentials=Credentials(jwks_uri="https://keys.example.com/jwks.json"),
    )
    reply = await post(
        h, {**CC, "client_id": client.client_id}, headers={HEADER: pki.certs["self"].header}
    )
    assert reply.status == 401 and reply.body["error"] == "invalid_client", reply.body
    assert "jwks_uri" in reply.body["error_description"]


async def test_the_header_from_an_untrusted_peer_is_ignored_and_logged_once(
    make_harness: ServiceFactory, pki: PKI, log_sink: Any
) -> None:
    h = await header_mode(make_harness, pki, "10.0.0.0/8")  # loopback is not a proxy here
    mark = log_sink.mark()
    client_id = await tls_client(h, tls_subject_dn=DN)
    for _ in range(3):
        reply = await post(
            h, {**CC, "client_id": client_id}, headers={HEADER: pki.certs["dn"].header}
        )
        assert reply.status == 401 and reply.body["error"] == "invalid_client", reply.body
    # A client_secret client that sends the header gets no cnf from it.
    client, secret = await h.client(grant_types=["client_credentials"])
    assert secret is not None
    plain = await post(
        h, CC, basic=(client.client_id, secret), headers={HEADER: pki.certs["dn"].header}
    )
    assert plain.status == 200 and "cnf" not in claims(plain.body["access_token"])
    warnings = [
        e
        for e in log_sink.events(mark)
        if e.get("event") == "client certificate header from an untrusted peer ignored"
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["peer"] == "127.0.0.1" and warnings[0]["header"] == HEADER


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----",
        "%ff%fe",
        "%E2%82",
        "-----BEGIN CERTIFICATE-----",
        "%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE%2D%2D%2D%2D%2D",
    ],
)
async def test_a_malformed_header_from_the_proxy_is_a_4xx(
    make_harness: ServiceFactory, pki: PKI, value: str
) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    client_id = await tls_client(h, tls_subject_dn=DN)
    reply = await post(h, {**CC, "client_id": client_id}, headers={HEADER: value})
    assert reply.status == 400 and reply.body["error"] == "invalid_request", reply.body


async def test_a_header_sent_twice_or_empty(make_harness: ServiceFactory, pki: PKI) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    client_id = await tls_client(h, tls_subject_dn=DN)
    cert = pki.certs["dn"].header
    twice = await post(
        h,
        {**CC, "client_id": client_id},
        headers=CIMultiDict([(HEADER, cert), (HEADER, cert)]),
    )
    assert twice.status == 400 and twice.body["error"] == "invalid_request", twice.body
    empty = await post(h, {**CC, "client_id": client_id}, headers={HEADER: ""})
    assert empty.status == 401 and empty.body["error"] == "invalid_client", empty.body


async def test_a_public_clients_refresh_binding_through_a_proxy(
    make_harness: ServiceFactory, pki: PKI
) -> None:
    h = await header_mode(make_harness, pki, "127.0.0.1/32")
    app, _ = await h.client(public=True, grant_types=["authorization_code", "refresh_token"])
    code, verifier = await h.mint_code(app)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uris[0],
        "code_verifier": verifier or "",
        "client_id": app.client_id,
    }
    # A public client's certificate is not authentication: a self-signed one binds too.
    first = await post(h, exchange, headers={HEADER: pki.certs["self"].header})
    assert first.status == 200, first.body
    refresh = {
        "grant_type": "refresh_token",
        "client_id": app.client_id,
        "refresh_token": first.body["refresh_token"],
    }
    refused = await post(h, refresh, headers={HEADER: pki.certs["app"].header})
    assert refused.status == 400 and refused.body["error"] == "invalid_grant", refused.body
    ok = await post(h, refresh, headers={HEADER: pki.certs["self"].header})
    assert ok.status == 200, ok.body
