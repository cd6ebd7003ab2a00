"""The client certificate of a request (RFC 8705 §2), from one of two places:

* **the TLS handshake** of the public listener (`TOKENSVC_TLS_CERT_FILE`/`_KEY_FILE` with
  `TOKENSVC_TLS_CLIENT_CA_FILE`): OpenSSL has checked it against the client CA already;
* **a header set by a TLS-terminating proxy** (`TOKENSVC_CLIENT_CERT_HEADER`): the leaf
  certificate as URL-encoded PEM, as nginx's `$ssl_client_escaped_cert` writes it. It is
  believed only when the TCP peer is in `TOKENSVC_TRUSTED_PROXIES`; from such a peer the header
  is the only source (absent or empty: no certificate; the proxy's own handshake certificate
  is never taken for a client's). From any other peer the header is ignored, and the first
  time that happens a warning is logged (the peer, never the header's value).

A malformed header from a trusted proxy is `invalid_request`, never a 5xx. When neither source
is configured the listener has no `ClientCerts` at all, so `/token` pays one `is None` test.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from urllib.parse import unquote

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from tokensvc.config import Settings
from tokensvc.errors import InvalidRequest
from tokensvc.forwarded import Network, is_trusted, parse_networks

log = structlog.get_logger("tokensvc")

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def _strictly(load: Callable[[bytes], x509.Certificate], data: bytes) -> x509.Certificate:
    """`load(data)`, or ValueError whatever the parser raises on hostile bytes (ValueError,
    `InvalidVersion`, ...). What `cryptography` only warns about today (a serial number that
    is not positive, RFC 5280 §4.1.2.2) it will refuse tomorrow: refused now too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            return load(data)
        except Exception as exc:  # every parser failure means "malformed"
            raise ValueError(type(exc).__name__) from None


def _first_pem(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(data)[0]


@lru_cache(maxsize=1024)
def _from_der(der: bytes) -> x509.Certificate:
    """A handshake certificate, parsed once per distinct certificate (connections repeat)."""
    return _strictly(x509.load_der_x509_certificate, der)


@lru_cache(maxsize=1024)
def _from_header(value: str) -> x509.Certificate:
    """The first certificate of a URL-encoded PEM header value; ValueError if there is none.
    (`unquote`, not `unquote_plus`: `+` is a base64 character, and some proxies leave it.)"""
    pem = unquote(value, errors="strict")
    if _PEM_BEGIN not in pem:
        raise ValueError("no PEM certificate")
    return _strictly(_first_pem, pem.encode("ascii"))


class ClientCerts:
    """Where this listener takes client certificates from (built once, `client_certs`)."""

    __slots__ = ("_handshake", "_header", "_proxies", "_warned")

    def __init__(
        self, *, handshake: bool, header: str | None, proxies: Sequence[Network] = ()
    ) -> None:
        self._handshake = handshake
        self._header = header
        self._proxies = tuple(proxies)
        self._warned = False

    def of(self, request: web.Request) -> x509.Certificate | None:
        """The request's client certificate, or None; `InvalidRequest` for a malformed one."""
        transport = request.transport
        if self._header is not None:
            values = request.headers.getall(self._header, ())
            peername = transport.get_extra_info("peername") if transport is not None else None
            peer = peername[0] if isinstance(peername, tuple) and peername else None
            if peer is not None and is_trusted(peer, self._proxies):
                return _header_certificate(values)
            if values and not self._warned:
                self._warned = True
                log.warning(
                    "client certificate header from an untrusted peer ignored",
                    header=self._header,
                    peer=peer or "-",
                )
        if self._handshake and transport is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                der = ssl_object.getpeercert(binary_form=True)
                if der:
                    try:
                        return _from_der(der)
                    except ValueError:
                        raise InvalidRequest("The client certificate cannot be read.") from None
        return None


def _header_certificate(values: Sequence[str]) -> x509.Certificate | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("The client certificate header was sent more than once.")
    value = values[0].strip()
    if not value:
        return None  # nginx sends an empty value when the client showed no certificate
    try:
        return _from_header(value)
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        raise InvalidRequest(
            "The forwarded client certificate is not a URL-encoded PEM certificate."
        ) from None


def client_certs(settings: Settings) -> ClientCerts | None:
    """The listener's certificate sources; None when it has none (the common case)."""
    handshake = settings.tls_cert_file is not None and settings.tls_client_ca_file is not None
    header = settings.client_cert_header
    if not handshake and header is None:
        return None
    proxies = parse_networks(",".join(settings.trusted_proxies))
    return ClientCerts(handshake=handshake, header=header, proxies=proxies)
