"""HTTPS on the token service's public listener (RFC 8705 §2 needs the client certificate of
the handshake). The internal listener and the login front-end stay plain HTTP.

With `TOKENSVC_TLS_CERT_FILE` and `TOKENSVC_TLS_KEY_FILE` the public listener serves TLS 1.2
or later. With `TOKENSVC_TLS_CLIENT_CA_FILE` too it asks every client for a certificate
(`CERT_OPTIONAL`: a client without one still connects and authenticates otherwise) and
OpenSSL verifies one that is sent against that bundle.

Python's `ssl` cannot ask for a certificate without verifying it, so over direct TLS a
self-signed client certificate (RFC 8705 §2.2, `self_signed_tls_client_auth`) is refused in
the handshake: such clients must come through a TLS-terminating proxy that forwards the
certificate in `TOKENSVC_CLIENT_CERT_HEADER` (`tokensvc.http.clientcert`). Intermediate CAs
must be in the bundle too: Python exposes only the leaf certificate of the handshake.
"""

from __future__ import annotations

import ssl

from aiohttp import web

from tokensvc.config import Settings
from tokensvc.http.appkeys import CLIENT_CERTS
from tokensvc.http.clientcert import client_certs
from tokensvc.http.server import TLS_CONTEXT


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The public listener's TLS context, or None for plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=lambda: b"")
    context.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1 only
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(cafile=settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def configure(app: web.Application, settings: Settings) -> None:
    """Set the public `app`'s TLS context (served by `tokensvc.http.server.serve`) and where
    it takes client certificates from (`CLIENT_CERTS`, None when nowhere)."""
    context = server_context(settings)
    if context is not None:
        app[TLS_CONTEXT] = context
    app[CLIENT_CERTS] = client_certs(settings)
