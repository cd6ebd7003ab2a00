"""The `id_token_hint` of a sign-out request (OIDC RP-Initiated Logout 1.0 §2): an ID Token
the token service issued, checked against its published keys before anything it says is used.

The front-end holds no private key; it verifies with the public set the token service
publishes (`GET /internal/jwks`, the body of `/jwks.json`), kept for `KEYS_TTL` and fetched
again at once when a token names a key the kept set lacks (a key announced since), at most
once per `REFETCH_INTERVAL` so that forged `kid`s cannot make it hammer the token service.

What is checked: the signature, `iss`, and that it is an ID Token (`typ: JWT`, a `sub`, an
`aud`; never an access token, `at+jwt`, or a logout token). Expiry is not: §2 lets the OP
accept an expired hint to identify the session and the client, and a person who signs out
of an application they left open overnight holds exactly that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tokensvc.jwsverify import BadJws, parse, verified_claims
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.publickeys import ASSERTION_ALGS, BadKeys, PublicKey, public_keys

KEYS_TTL = 300.0
REFETCH_INTERVAL = 5.0


class InvalidHint(Exception):
    """Not an ID Token of ours; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Hint:
    """What a verified hint identifies: the person, the session, the relying party."""

    sub: str
    sid: str | None
    audiences: tuple[str, ...]

    def names(self, client_id: str) -> bool:
        """RP-Initiated Logout §2: a `client_id` sent with a hint must be the one the ID
        Token was issued to."""
        return client_id in self.audiences

    @property
    def client_id(self) -> str | None:
        """The relying party, where the token has one audience (ours always do)."""
        return self.audiences[0] if len(self.audiences) == 1 else None


class HintVerifier:
    def __init__(
        self, api: TokenAPI, issuer: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._api = api
        self._issuer = issuer
        self._clock = clock
        self._keys: tuple[PublicKey, ...] = ()
        self._fetched_at = float("-inf")

    async def verify(self, token: str) -> Hint:
        try:
            compact = parse(token, ASSERTION_ALGS)
        except BadJws:
            raise InvalidHint("The id_token_hint is not an ID Token.") from None
        if compact.header.get("typ", "JWT") != "JWT":
            raise InvalidHint("The id_token_hint is not an ID Token.")
        if self._clock() - self._fetched_at > KEYS_TTL:
            await self._refresh()
        try:
            claims = verified_claims(compact, self._keys)
        except BadJws:
            if self._clock() - self._fetched_at <= REFETCH_INTERVAL:  # a rotation would show
                raise InvalidHint("The id_token_hint is not one this provider issued.") from None
            await self._refresh()
            try:
                claims = verified_claims(compact, self._keys)
            except BadJws:
                raise InvalidHint("The id_token_hint is not one this provider issued.") from None
        return _identified(claims, self._issuer)

    async def _refresh(self) -> None:
        body = await self._api.published_keys()
        try:
            self._keys = public_keys(body)
        except BadKeys:  # the token service publishes only sets it can sign with
            self._keys = ()
        self._fetched_at = self._clock()


def _identified(claims: dict[str, object], issuer: str) -> Hint:
    sub, sid, aud = claims.get("sub"), claims.get("sid"), claims.get("aud")
    audiences = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) else ()
    if (
        claims.get("iss") != issuer
        or not isinstance(sub, str)
        or not sub
        or not audiences
        or not all(isinstance(a, str) and a for a in audiences)
        or "events" in claims
        or (sid is not None and not isinstance(sid, str))
    ):
        raise InvalidHint("The id_token_hint is not one this provider issued.")
    return Hint(sub=sub, sid=sid, audiences=audiences)
