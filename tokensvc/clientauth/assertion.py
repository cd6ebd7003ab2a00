"""JWT client assertions (RFC 7523 §2.2, §3; OIDC Core §9): `private_key_jwt`, signed by a key
the client holds, and `federated_jwt`, a token its platform issued to the workload (a
Kubernetes projected service-account token, a SPIFFE JWT-SVID, a CI system's OIDC token).

`private_key_jwt`: `iss` = `sub` = the client_id; `aud` names this issuer or its token
endpoint; `exp` in the future and at most 600 s ahead; `jti` accepted once, on every replica
(`ReplayStore`, Redis when configured); signed with an asymmetric algorithm by a key of the
client's JWKS (inline, or fetched from its `jwks_uri`: `RemoteKeys`).

`federated_jwt`: signed by a key of the client's federation issuer; `iss` is that issuer,
`sub` matches the client's `federated_subject` (exact, or `*` for any run of characters
without `/` or `:`), `aud` names this issuer, `exp` in the future. These tokens are bearer
credentials the platform hands the workload and it reuses until they expire, so `jti` is not
single-use; a verified token is remembered until its `exp`, so a workload reusing its token
pays the signature check once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from tokensvc import jwsverify
from tokensvc.clientauth.remotekeys import KeysUnavailable, RemoteKeys
from tokensvc.errors import InvalidClient
from tokensvc.models import Client, Federation
from tokensvc.opaque import lookup_hash
from tokensvc.publickeys import ASSERTION_ALGS, BadKeys, PublicKey, public_keys
from tokensvc.storage.protocols import ClientStore, FederationStore, ReplayStore

MAX_LIFETIME = 600  # seconds an assertion may be valid ahead (SPEC; RFC 7523 §3 leaves it open)
LEEWAY = 30  # seconds of clock skew allowed either way
FEDERATION_TTL = 30.0  # seconds a federation's record is served from this process
VERIFIED_MAX = 10_000  # verified workload tokens remembered at once


@dataclass(slots=True)
class _Inline:
    jwks: dict[str, Any]
    keys: tuple[PublicKey, ...]


class AssertionVerifier:
    """The `AssertionCheck` of `tokensvc.clientauth`, built once per listener."""

    def __init__(
        self,
        issuer: str,
        replay: ReplayStore,
        federations: FederationStore,
        remote: RemoteKeys,
        *,
        clock: Callable[[], float] = time.time,
        clients: ClientStore | None = None,
    ) -> None:
        self._audiences = frozenset({issuer, issuer + "/token"})
        self._issuer = issuer
        self._replay = replay
        self._federations = federations
        self._remote = remote
        self._clock = clock
        self._inline: dict[str, _Inline] = {}
        self._federation_cache: dict[str, tuple[float, Federation | None]] = {}
        self._verified: dict[bytes, float] = {}
        self._clients = clients  # for `workload`: which clients a federation's tokens name
        self._by_issuer: tuple[float, dict[str, list[Client]]] | None = None

    async def check(self, client: Client, assertion: str) -> None:
        if client.auth_method == "federated_jwt":
            await self._federated(client, assertion)
        else:
            await self._private_key_jwt(client, assertion)

    # ------------------------------------------------------------------ private_key_jwt

    async def _private_key_jwt(self, client: Client, assertion: str) -> None:
        compact = _parsed(assertion)
        keys = await self._client_keys(client, compact.header.get("kid"))
        claims = _verified(compact, keys)
        now = self._clock()
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise InvalidClient("The assertion's iss and sub must be the client_id.")
        self._check_audience(claims, self._audiences)
        exp = _expiry(claims, now)
        if exp > now + MAX_LIFETIME + LEEWAY:
            raise InvalidClient(f"The assertion may be valid at most {MAX_LIFETIME} s ahead.")
        _not_before(claims, now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise InvalidClient("The assertion needs a jti.")
        key = lookup_hash(f"pkjwt\0{client.client_id}\0{jti}")
        if not await self._replay.first_use(key, exp + LEEWAY):
            raise InvalidClient("The assertion was used before.", detail="assertion replay")

    async def _client_keys(self, client: Client, kid: object) -> tuple[PublicKey, ...]:
        credentials = client.credentials
        if credentials.jwks_uri is not None:
            return await self._fetched(credentials.jwks_uri, kid)
        if credentials.jwks is None:
            raise InvalidClient("The client has no keys.", detail="no jwks")
        cached = self._inline.get(client.client_id)
        if cached is None or cached.jwks is not credentials.jwks:
            try:
                cached = _Inline(credentials.jwks, public_keys(credentials.jwks))
            except BadKeys:
                raise InvalidClient("The client's keys cannot be used.") from None
            self._inline[client.client_id] = cached
        return cached.keys

    async def _fetched(self, url: str, kid: object) -> tuple[PublicKey, ...]:
        try:
            return await self._remote.keys(url, kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            raise InvalidClient(
                "The keys to check the assertion cannot be had.", detail=str(exc)
            ) from None

    # ------------------------------------------------------------------ federated_jwt

    async def _federated(self, client: Client, token: str) -> None:
        issuer = client.credentials.federated_issuer
        pattern = client.credentials.federated_subject
        if issuer is None or pattern is None:
            raise InvalidClient("The client names no federation.", detail="no federation")
        federation = await self._federation(issuer)
        if federation is None:
            raise InvalidClient("The client's federation is not trusted.", detail="no federation")
        remembered = lookup_hash(f"fed\0{client.client_id}\0{token}")
        now = self._clock()
        until = self._verified.get(remembered)
        if until is not None and until > now:
            return
        claims = await self._workload_claims(federation, _parsed(token), now)
        if not _subject_matches(claims, pattern):
            raise InvalidClient("The workload token's subject is not this client's.")
        if len(self._verified) >= VERIFIED_MAX:
            self._verified = {k: v for k, v in self._verified.items() if v > now}
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.pop(next(iter(self._verified)))
        self._verified[remembered] = float(claims["exp"])

    async def workload(self, token: str) -> tuple[dict[str, Any], Client]:
        """A token of a federation issuer as a token-exchange subject or actor (RFC 8693
        §2.1, SPEC): verified like a `federated_jwt` assertion by the federation its `iss`
        names, and its `sub` must match a registered `federated_jwt` client of that
        federation. The claims and that client; `InvalidClient` otherwise."""
        compact = _parsed(token)
        try:
            unverified = orjson.loads(compact.payload)
        except orjson.JSONDecodeError:
            raise InvalidClient("Malformed workload token.") from None
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        federation = await self._federation(issuer) if isinstance(issuer, str) else None
        if federation is None:
            raise InvalidClient("The token's issuer is not a trusted federation.")
        claims = await self._workload_claims(federation, compact, self._clock())
        for client in await self._federated_clients(federation.issuer):
            pattern = client.credentials.federated_subject
            if pattern is not None and _subject_matches(claims, pattern):
                return claims, client
        raise InvalidClient("The token's subject is no registered workload.")

    async def _workload_claims(
        self, federation: Federation, compact: jwsverify.Compact, now: float
    ) -> dict[str, Any]:
        """The claims of a token the federation issued for this service: its keys verify it,
        `iss` is the federation, `aud` names this issuer, `exp` is ahead, `nbf` behind."""
        if federation.jwks_uri is not None:
            keys = await self._fetched(federation.jwks_uri, compact.header.get("kid"))
        else:
            assert federation.jwks is not None
            try:
                keys = public_keys(federation.jwks)
            except BadKeys:
                raise InvalidClient("The federation's keys cannot be used.") from None
        claims = _verified(compact, keys)
        if claims.get("iss") != federation.issuer:
            raise InvalidClient("The workload token is from another issuer.")
        self._check_audience(claims, frozenset({self._issuer}))
        claims["exp"] = _expiry(claims, now)
        _not_before(claims, now)
        return claims

    async def _federated_clients(self, issuer: str) -> list[Client]:
        """The `federated_jwt` clients bound to `issuer`, from a listing of every client kept
        `FEDERATION_TTL` seconds (token exchange is rare next to client authentication)."""
        if self._clients is None:
            return []
        now = self._clock()
        if self._by_issuer is None or self._by_issuer[0] <= now:
            index: dict[str, list[Client]] = {}
            for client in await self._clients.list():
                bound = client.credentials.federated_issuer
                if client.auth_method == "federated_jwt" and bound is not None:
                    index.setdefault(bound, []).append(client)
            self._by_issuer = (now + FEDERATION_TTL, index)
        return self._by_issuer[1].get(issuer, [])

    async def _federation(self, issuer: str) -> Federation | None:
        now = self._clock()
        cached = self._federation_cache.get(issuer)
        if cached is not None and cached[0] > now:
            return cached[1]
        federation = await self._federations.get(issuer)
        self._federation_cache[issuer] = (now + FEDERATION_TTL, federation)
        return federation

    # ------------------------------------------------------------------ shared

    @staticmethod
    def _check_audience(claims: dict[str, Any], allowed: frozenset[str]) -> None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(isinstance(a, str) and a in allowed for a in audiences):
            raise InvalidClient("The assertion's aud must name this issuer.")


@lru_cache(maxsize=1024)
def subject_pattern(pattern: str) -> re.Pattern[str]:
    """`federated_subject` as a regular expression: `*` matches any run of characters other
    than `/` and `:` (one path or service-account segment); everything else literally."""
    return re.compile("[^/:]*".join(re.escape(part) for part in pattern.split("*")))


def _parsed(token: str) -> jwsverify.Compact:
    """The JWS, before any key is chosen; refuses what is no signed JWT here (`none` and HMAC
    algorithms are never allowed)."""
    try:
        return jwsverify.parse(token, ASSERTION_ALGS)
    except jwsverify.BadJws as exc:
        raise InvalidClient(str(exc)) from None


def _verified(compact: jwsverify.Compact, keys: tuple[PublicKey, ...]) -> dict[str, Any]:
    """The claims, once the signature verifies with one of `keys`."""
    try:
        return jwsverify.verified_claims(compact, keys)
    except jwsverify.BadJws:
        raise InvalidClient("The assertion's signature does not verify.") from None


def _subject_matches(claims: dict[str, Any], pattern: str) -> bool:
    subject = claims.get("sub")
    return isinstance(subject, str) and subject_pattern(pattern).fullmatch(subject) is not None


def _expiry(claims: dict[str, Any], now: float) -> float:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidClient("The assertion needs an exp.")
    if exp <= now - LEEWAY:
        raise InvalidClient("The assertion has expired.")
    return float(exp)


def _not_before(claims: dict[str, Any], now: float) -> None:
    nbf = claims.get("nbf")
    if nbf is not None and (
        not isinstance(nbf, int | float) or isinstance(nbf, bool) or nbf > now + LEEWAY
    ):
        raise InvalidClient("The assertion is not valid yet.")
