"""Is this access token still good? Signature and expiry, then the two ways it can have been
revoked: its `jti` on the deny-list (RFC 7009), or its grant revoked (refresh-token reuse, code
replay, family revocation). Used by /introspect, /revoke and /userinfo."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tokensvc.models import Grant
from tokensvc.service import TokenService
from tokensvc.signing.verify import InvalidToken


@dataclass(frozen=True, slots=True)
class AccessToken:
    claims: dict[str, Any]
    grant: Grant | None  # None for client_credentials tokens

    @property
    def scope(self) -> str:
        return str(self.claims.get("scope", ""))


async def check(svc: TokenService, token: str) -> AccessToken:
    """The live token's claims and grant; `InvalidToken` otherwise."""
    claims = svc.verified.claims(token, svc.keys, svc.settings.issuer, svc.clock())
    gid = claims.get("gid")
    if isinstance(gid, str):
        denied, grant = await asyncio.gather(
            svc.stores.revoked.contains(claims["jti"]), svc.stores.grants.grant(gid)
        )
        if grant is None:
            raise InvalidToken("The token's grant has been revoked.")
    else:
        denied, grant = await svc.stores.revoked.contains(claims["jti"]), None
    if denied:
        raise InvalidToken("The token has been revoked.")
    return AccessToken(claims, grant)
