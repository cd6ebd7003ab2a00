"""Verifying our own access tokens (RFC 9068 §4) for introspection, revocation and /userinfo.

joserfc checks the signature with the published key named by `kid`, with `algorithms=` fixed
to that key's algorithm; the claims are checked here, strictly, with no leeway (the token is
ours and our clocks agree).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError

from tokensvc.signing.keys import KeySet


class InvalidToken(Exception):
    """Not an access token of ours that is still valid; the message is safe to send."""


def _header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("The token is malformed.") from None
    if not isinstance(data, dict):
        raise InvalidToken("The token is malformed.")
    return data


def verify_access_token(token: str, keys: KeySet, issuer: str, now: float) -> dict[str, Any]:
    if token.count(".") != 2 or len(token) > 8192:
        raise InvalidToken("The token is malformed.")
    header = _header(token)
    published = keys.at(now).verify_keys  # the keys /jwks.json shows at `now`
    kid = header.get("kid")
    key = published.get(kid) if isinstance(kid, str) else None
    if key is None or header.get("typ") != "at+jwt":
        raise InvalidToken("The token was not issued here.")
    try:
        decoded = jwt.decode(token, key, algorithms=[key.alg or header.get("alg", "")])
    except (JoseError, ValueError):
        raise InvalidToken("The token signature is invalid.") from None
    claims = dict(decoded.claims)
    if claims.get("iss") != issuer:
        raise InvalidToken("The token was not issued here.")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        raise InvalidToken("The token has expired.")
    if not all(isinstance(claims.get(c), str) for c in ("sub", "jti", "client_id")):
        raise InvalidToken("The token is malformed.")
    return claims
