"""Verifying our own access tokens (RFC 9068 §4) for introspection, revocation and /userinfo.

joserfc checks the signature with the published key named by `kid`, with `algorithms=` fixed
to that key's algorithm; the claims are checked here, strictly, with no leeway (the token is
ours and our clocks agree). Before that, the signature must be in the one form our signer
produces (low-S ECDSA, k-octet RSA; see `signing.jws`), so a token has one valid string and a
cache or deny-list keyed by the string cannot be sidestepped with a second one.

This is the only place that verifies our tokens: /userinfo, /introspect and /revoke reach it
through `accesstoken.check`; nothing accepts an ID token back (no `id_token_hint`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError

from tokensvc.opaque import lookup_hash
from tokensvc.signing.jws import ECDSA, RSA
from tokensvc.signing.keys import KeySet

VERIFIED_MAX = 10_000  # tokens whose signature check is remembered at once


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


def _signed_here(alg: str, key: Any, token: str) -> bool:
    """Whether the signature has the form we sign in: for ECDSA s <= n/2 (high-S is the same
    signature malleated, SEC 1 v2 §4.1.4); for RSA exactly k octets (RFC 8017 §8.1.2, §8.2.2,
    step 1). EdDSA needs nothing more than OpenSSL's RFC 8032 §5.1.7 checks."""
    ecdsa = ECDSA.get(alg)
    if ecdsa is None and alg not in RSA:
        return True
    segment = token.rsplit(".", 1)[1]
    try:
        signature = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:
        return False  # joserfc would refuse it too; its decoding is the strict one
    if ecdsa is not None:
        return ecdsa.low_s(signature)
    bits: int = key.get_op_key("verify").key_size
    return len(signature) == (bits + 7) // 8


def verify_access_token(token: str, keys: KeySet, issuer: str, now: float) -> dict[str, Any]:
    if token.count(".") != 2 or len(token) > 8192:
        raise InvalidToken("The token is malformed.")
    header = _header(token)
    published = keys.at(now).verify_keys  # the keys /jwks.json shows at `now`
    kid = header.get("kid")
    key = published.get(kid) if isinstance(kid, str) else None
    if key is None or header.get("typ") != "at+jwt":
        raise InvalidToken("The token was not issued here.")
    alg = key.alg or header.get("alg", "")
    if not isinstance(alg, str) or not _signed_here(alg, key, token):
        raise InvalidToken("The token signature is invalid.")
    try:
        decoded = jwt.decode(token, key, algorithms=[alg])
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


class VerifiedTokens:
    """Access tokens whose signature verified, remembered until they expire, so that a token
    presented again (a resource server introspecting each call, a subject token exchanged for
    every hop) costs a hash and a lookup instead of a signature check. Only what the signature
    proves is remembered: expiry is checked at each use, and so is the signing key, which must
    still be published (a key withdrawn early takes its tokens with it). Revocation is not
    decided here (`tokensvc.accesstoken` asks the stores every time)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[dict[str, Any], str]] = {}

    def claims(self, token: str, keys: KeySet, issuer: str, now: float) -> dict[str, Any]:
        """`verify_access_token`'s answer (a copy of the claims), from memory when it can."""
        key = lookup_hash(token)
        entry = self._entries.get(key)
        if entry is not None:
            claims, kid = entry
            if claims["exp"] > now and kid in keys.at(now).verify_keys:
                return dict(claims)
            del self._entries[key]
        claims = verify_access_token(token, keys, issuer, now)
        if len(self._entries) >= VERIFIED_MAX:
            self._entries = {k: v for k, v in self._entries.items() if v[0]["exp"] > now}
            if len(self._entries) >= VERIFIED_MAX:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (claims, _header(token)["kid"])
        return dict(claims)
