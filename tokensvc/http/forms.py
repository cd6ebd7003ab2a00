"""Reading `application/x-www-form-urlencoded` bodies strictly (RFC 6749 §3.1-§3.2).

Parameters without a value count as omitted; a parameter sent twice is an error; the body must
be UTF-8 and hold no NUL. The body size limit is the application's `client_max_size`.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from aiohttp import web

from tokensvc.clientauth import authenticate
from tokensvc.errors import InvalidRequest
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.limits.lockout import Lockouts
from tokensvc.models import Client
from tokensvc.storage.protocols import ClientStore

FORM = "application/x-www-form-urlencoded"
MAX_BODY = 64 * 1024
MAX_FIELDS = 100  # an OAuth form has a dozen; thousands would only be work for nothing
_NUL = "Parameters must not contain NUL characters."
_NAMED = frozenset(
    {
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
        "username",
        "password",
        "token",
        "token_type_hint",
    }
)


async def read_form(request: web.Request) -> dict[str, str]:
    if request.content_type != FORM:
        raise InvalidRequest(f"Content-Type must be {FORM}.")
    raw = await request.read()
    try:
        pairs = _pairs(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The body is not UTF-8 form data.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if not value:
            continue
        if name in params:
            which = name if name in _NAMED else "A"
            raise InvalidRequest(f"{which} parameter must not be repeated.".capitalize())
        params[name] = value
    return params


def _pairs(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="strict")`, without its per-call set-up
    and unquoting only the parts that need it (most /token bodies need none).

    NUL is refused: no OAuth parameter may hold it (RFC 6749 Appendix A), and Postgres text
    cannot, so letting one through would turn bad input into a store error (a 503)."""
    if "\x00" in text:
        raise InvalidRequest(_NUL)
    parts = text.split("&")
    if len(parts) > MAX_FIELDS:
        raise InvalidRequest(f"At most {MAX_FIELDS} parameters are accepted.")
    pairs = []
    for part in parts:
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name = unquote_plus(name, errors="strict")
            value = unquote_plus(value, errors="strict")
            if "\x00" in name or "\x00" in value:
                raise InvalidRequest(_NUL)
        pairs.append((name, value))
    return pairs


async def authenticated_form(
    request: web.Request, clients: ClientStore, lockouts: Lockouts | None
) -> tuple[Client, dict[str, str]]:
    """The form of a client-authenticated endpoint (`/introspect`, `/revoke`) and its client,
    authenticated as at `/token` (lockouts included); the client goes on the log line."""
    params = await read_form(request)
    client = await authenticate(
        clients, request.headers.get("Authorization"), params, lockouts=lockouts
    )
    request[LOG_FIELDS]["client_id"] = client.client_id
    return client, params
