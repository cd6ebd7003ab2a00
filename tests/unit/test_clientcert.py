"""Where a request's client certificate comes from (`tokensvc.http.clientcert`, RFC 8705 §2):
the handshake, or a trusted proxy's header (URL-encoded PEM), and nothing else."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from tests.certificates import Issued, ca, leaf, pem_of
from tokensvc.binding import NO_BINDING, Binding, certificate_binding, x5t_s256
from tokensvc.config import Settings
from tokensvc.errors import InvalidRequest
from tokensvc.forwarded import is_trusted, parse_networks
from tokensvc.http.clientcert import ClientCerts, client_certs

HEADER = "X-Client-Cert"
PROXIES = parse_networks("10.0.0.0/8, fd00::/8")


class _SSLObject:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der


class _Transport:
    def __init__(self, peer: str, der: bytes | None = None, tls: bool = False) -> None:
        self.extra = {"peername": (peer, 4711), "ssl_object": _SSLObject(der) if tls else None}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def is_closing(self) -> bool:
        return False


def request(peer: str, headers: list[tuple[str, str]] = (), **transport: Any) -> Any:  # type: ignore[assignment]
    return make_mocked_request(
        "POST", "/token", headers=CIMultiDict(headers), transport=_Transport(peer, **transport)
    )


@pytest.fixture(scope="module")
def cert() -> Issued:
    return leaf(ca("Unit CA"), "unit-client", dns=("unit.example",))


HEADER_ONLY = ClientCerts(handshake=False, header=HEADER, proxies=PROXIES)
BOTH = ClientCerts(handshake=True, header=HEADER, proxies=PROXIES)
HANDSHAKE = ClientCerts(handshake=True, header=None)


def test_a_trusted_proxys_header_is_the_certificate(cert: Issued) -> None:
    got = HEADER_ONLY.of(request("10.1.2.3", [(HEADER, cert.header)]))
    assert got == cert.cert
    # `+` is a base64 character: a proxy that leaves it unescaped is read the same.
    loose = cert.header.replace("%2B", "+")
    assert HEADER_ONLY.of(request("10.1.2.3", [(HEADER, loose)])) == cert.cert
    # IPv6 and IPv4-mapped peers of a dual-stack socket.
    assert HEADER_ONLY.of(request("fd00::7", [(HEADER, cert.header)])) == cert.cert
    assert HEADER_ONLY.of(request("::ffff:10.0.0.9", [(HEADER, cert.header)])) == cert.cert


def test_from_a_trusted_proxy_the_header_is_the_only_source(cert: Issued) -> None:
    """The proxy's own handshake certificate is never taken for a client's."""
    proxy_cert = leaf(None, "proxy")
    r = request("10.0.0.1", [], tls=True, der=proxy_cert.der)
    assert BOTH.of(r) is None
    assert BOTH.of(request("10.0.0.1", [(HEADER, "")], tls=True, der=proxy_cert.der)) is None


def test_an_untrusted_peers_header_is_ignored_and_logged_once(cert: Issued, log_sink: Any) -> None:
    certs = ClientCerts(handshake=True, header=HEADER, proxies=PROXIES)
    mark = log_sink.mark()
    assert certs.of(request("192.0.2.1", [(HEADER, cert.header)])) is None
    assert certs.of(request("192.0.2.2", [(HEADER, cert.header)])) is None
    # Its own handshake certificate still counts.
    direct = leaf(None, "direct")
    got = certs.of(request("192.0.2.1", [(HEADER, cert.header)], tls=True, der=direct.der))
    assert got == direct.cert
    events = [e for e in log_sink.events(mark) if "untrusted" in str(e.get("event"))]
    assert len(events) == 1 and events[0]["peer"] == "192.0.2.1", events
    assert cert.header[40:120] not in str(events) and "BEGIN" not in str(events)


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "%ff",
        "%C3%28",
        "-----BEGIN%20CERTIFICATE-----%0A%0A-----END%20CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\tMIIB-----END CERTIFICATE-----",
        "-----BEGIN%20CERTIFICATE-----%0A\u00e9%0A-----END%20CERTIFICATE-----",
        "-----BEGIN%20CERTIFICATE-----%0A%E2%82%AC%0A-----END%20CERTIFICATE-----",
    ],
)
def test_a_malformed_header_from_a_proxy_is_invalid_request(value: str) -> None:
    with pytest.raises(InvalidRequest):
        HEADER_ONLY.of(request("10.0.0.1", [(HEADER, value)]))


def test_a_header_twice_is_invalid_request(cert: Issued) -> None:
    with pytest.raises(InvalidRequest):
        HEADER_ONLY.of(request("10.0.0.1", [(HEADER, cert.header), (HEADER, cert.header)]))


def test_the_handshake_certificate(cert: Issued) -> None:
    assert HANDSHAKE.of(request("192.0.2.1", tls=True, der=cert.der)) == cert.cert
    assert HANDSHAKE.of(request("192.0.2.1", tls=True, der=None)) is None  # none was sent
    assert HANDSHAKE.of(request("192.0.2.1")) is None  # plain HTTP
    # A header means nothing without the header setting.
    assert HANDSHAKE.of(request("10.0.0.1", [(HEADER, cert.header)])) is None


def test_no_source_configured_means_no_clientcerts_at_all() -> None:
    base = Settings(issuer="https://auth.example.com")
    assert client_certs(base) is None
    # A CA without a TLS listener or a header: nothing to take certificates from.
    assert client_certs(base.with_(tls_client_ca_file="/ca.pem")) is None
    # TLS without a client CA asks for no certificates.
    assert client_certs(base.with_(tls_cert_file="/c", tls_key_file="/k")) is None
    assert client_certs(
        base.with_(tls_cert_file="/c", tls_key_file="/k", tls_client_ca_file="/ca.pem")
    )
    assert client_certs(base.with_(client_cert_header=HEADER, trusted_proxies=("10.0.0.0/8",)))


def test_binding_is_the_rfc_8705_thumbprint(cert: Issued) -> None:
    assert x5t_s256(cert.cert) == cert.x5t and len(cert.x5t) == 43
    bound = certificate_binding(cert.cert)
    assert bound.cnf() == {"x5t#S256": cert.x5t}
    assert NO_BINDING.cnf() == {}
    assert NO_BINDING.admits(NO_BINDING) and NO_BINDING.admits(bound)
    assert bound.admits(Binding(x5t_s256=cert.x5t)) and not bound.admits(NO_BINDING)
    assert not bound.admits(Binding(x5t_s256="A" * 43))


@pytest.mark.parametrize(
    ("address", "trusted"),
    [("10.0.0.1", True), ("::ffff:10.0.0.1", True), ("11.0.0.1", False), ("x", False)],
)
def test_is_trusted(address: str, trusted: bool) -> None:
    assert is_trusted(address, PROXIES) is trusted


def _mutated(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) >= 1
    return der.replace(old, new, 1)


def _negative_serial(der: bytes) -> bytes:
    """The serial INTEGER right after the version, with its sign bit set (RFC 5280 §4.1.2.2
    wants it positive; `cryptography` warns today and will refuse later)."""
    at = der.index(b"\xa0\x03\x02\x01\x02") + 5
    assert der[at] == 0x02  # INTEGER tag, then its length, then the first content byte
    return der[: at + 2] + bytes([der[at + 2] | 0x80]) + der[at + 3 :]


def test_certificates_the_parser_warns_about_or_chokes_on_are_malformed(cert: Issued) -> None:
    """Found by the fuzz: an X.509 version of 110 (`InvalidVersion`, not a ValueError) and a
    negative serial number (a `CryptographyDeprecationWarning`) are `invalid_request`, from
    the header and from the handshake alike, never a 500."""
    for der in (
        _mutated(cert.der, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x6e"),
        _negative_serial(cert.der),
    ):
        value = quote(pem_of(der), safe="")
        with pytest.raises(InvalidRequest):
            HEADER_ONLY.of(request("10.0.0.1", [(HEADER, value)]))
        with pytest.raises(InvalidRequest):
            HANDSHAKE.of(request("192.0.2.1", tls=True, der=der))
