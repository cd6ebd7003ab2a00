"""The login front-end's side of `/authorize`: the client looked up through the internal API,
then the shared validation (`tokensvc.authzrequest`), or the pushed request a `request_uri`
names (RFC 9126 §4), fetched through the internal API and usable once.

Until the client and its redirect URI are established, nothing may redirect (`UnsafeRequest`:
an error page); every later error is an `AuthorizeError` sent back with `state` and `iss`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from multidict import MultiMapping

from tokensvc.authzrequest import (
    AuthorizationRequest,
    AuthorizeError,
    UnsafeRequest,
    unrepeated,
    validate,
)
from tokensvc.login.tokenapi import ClientInfo, TokenAPI

__all__ = [
    "AuthorizationRequest",
    "AuthorizeError",
    "UnsafeRequest",
    "parse",
    "redirect_url",
]


def redirect_url(redirect_uri: str, params: dict[str, str | None]) -> str:
    """Add response parameters to the redirect URI, keeping its own query (RFC 6749 §3.1.2)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def parse(
    params: MultiMapping[str], api: TokenAPI
) -> tuple[ClientInfo, AuthorizationRequest]:
    """Validate `/authorize` parameters, looking the client up through the internal API; with
    a `request_uri`, the pushed request it names instead (RFC 9126 §4)."""
    by_reference = "request_uri" in params
    unrepeated(params, ("client_id", "request_uri" if by_reference else "redirect_uri"))
    client_id = params.get("client_id")
    if not client_id:
        raise UnsafeRequest("The request names no client (client_id is missing).")
    client = await api.client(client_id)
    if client is None:
        raise UnsafeRequest("The application that sent you here is not registered.")
    if by_reference:
        return client, await _pushed(params["request_uri"], api, client)
    return client, validate(params, client, client_id)


async def _pushed(request_uri: str, api: TokenAPI, client: ClientInfo) -> AuthorizationRequest:
    """The pushed request, taken (one use). Every other parameter is ignored (RFC 9126 §4).
    An unknown, expired, used or another client's `request_uri` establishes no redirect URI:
    an error page."""
    pushed = await api.pushed(client.client_id, request_uri) if request_uri else None
    if pushed is None:
        raise UnsafeRequest("This sign-in link has expired or was already used.")
    if pushed.redirect_uri not in client.redirect_uris:  # changed since it was pushed
        raise UnsafeRequest("The redirect_uri is not registered for this application.")
    return pushed
