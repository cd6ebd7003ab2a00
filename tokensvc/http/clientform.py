"""The form of a client-authenticated endpoint other than `/token` (`/introspect`, `/revoke`):
read strictly, then the client authenticated exactly as at `/token` (RFC 7662 §2.1, RFC 7009
§2.1)."""

from __future__ import annotations

from aiohttp import web

from tokensvc.clientauth import authenticate
from tokensvc.http.appkeys import CLIENT_AUTH, CLIENT_CERTS
from tokensvc.http.forms import read_form
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.models import Client


async def authenticated_form(request: web.Request) -> tuple[Client, dict[str, str]]:
    """The form of a client-authenticated endpoint (`/introspect`, `/revoke`) and its client,
    authenticated as at `/token` (lockouts included); the client goes on the log line."""
    params = await read_form(request)
    certs = request.app[CLIENT_CERTS]
    certificate = None if certs is None else certs.of(request)
    client = await authenticate(
        request.app[CLIENT_AUTH], request.headers.get("Authorization"), params, certificate
    )
    request[LOG_FIELDS]["client_id"] = client.client_id
    return client, params
