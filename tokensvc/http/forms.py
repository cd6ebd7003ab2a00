"""Reading `application/x-www-form-urlencoded` bodies strictly (RFC 6749 §3.1-§3.2): the one
form decoder of every listener (`/token`, `/introspect`, `/revoke`, `/userinfo`, and the login
front-end's `/login` and `/consent`).

Parameters without a value count as omitted; a parameter sent twice is an error, except those
that may repeat (`resource`, RFC 8707 §2; `audience`, RFC 8693 §2.1): their values are joined
with NUL (`tokensvc.repeated`), which no parameter can hold, so a value can never be mistaken
for two. The body must
be UTF-8 (after whatever `Content-Encoding` aiohttp undid: a body still compressed, as with
`gzip, gzip`, is not UTF-8 form data) and hold no NUL. Every failure is `InvalidRequest`,
never a decoding exception. The body size limit is the application's `client_max_size`.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote_plus

from aiohttp import web

from tokensvc.errors import InvalidRequest
from tokensvc.repeated import MULTI, REPEATABLE

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


class TooManyParameters(InvalidRequest):
    """More parameters than the endpoint accepts (a 400 at the OAuth endpoints; the login
    front-end answers its page with 413)."""


async def read_form(request: web.Request, max_fields: int = MAX_FIELDS) -> dict[str, str]:
    if request.content_type != FORM:
        raise InvalidRequest(f"Content-Type must be {FORM}.")
    raw = await request.read()
    try:
        pairs = _pairs(raw.decode("utf-8"), max_fields)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The body is not UTF-8 form data.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if not value:
            continue
        if name in params:
            if name in REPEATABLE:
                params[name] += MULTI + value
                continue
            which = name if name in _NAMED else "A"
            raise InvalidRequest(f"{which} parameter must not be repeated.".capitalize())
        params[name] = value
    return params


def _pairs(text: str, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="strict")`, without its per-call set-up
    and unquoting only the parts that need it (most /token bodies need none).

    NUL is refused: no OAuth parameter may hold it (RFC 6749 Appendix A), and Postgres text
    cannot, so letting one through would turn bad input into a store error (a 503)."""
    if "\x00" in text:
        raise InvalidRequest(_NUL)
    parts = text.split("&")
    if len(parts) > max_fields:
        raise TooManyParameters(f"At most {max_fields} parameters are accepted.")
    pairs = []
    for part in parts:
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name = _unquoted(name)
            value = _unquoted(value) if name in _REPEATED_VALUES else _unquote(value)
            if "\x00" in name or "\x00" in value:
                raise InvalidRequest(_NUL)
        pairs.append((name, value))
    return pairs


def _unquote(text: str) -> str:
    return unquote_plus(text, errors="strict")


# Names, and the values of parameters that are the same in request after request (URNs of
# grant and token types, resource URIs, scopes): decoded once. Never a credential's value.
_REPEATED_VALUES = frozenset(
    {
        "grant_type",
        "scope",
        "resource",
        "audience",
        "subject_token_type",
        "actor_token_type",
        "requested_token_type",
        "client_assertion_type",
        "token_type_hint",
        "redirect_uri",
    }
)
_unquoted = lru_cache(maxsize=512)(_unquote)
