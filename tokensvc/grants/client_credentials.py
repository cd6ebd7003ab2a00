"""`client_credentials` (RFC 6749 §4.4): the machine fast path.

No store is written and the client comes from the in-process cache, so a request costs one
secret check and one signature. `sub` is the client itself (RFC 9068 §2.2).
"""

from __future__ import annotations

from collections.abc import Mapping

from tokensvc import scope as scopes
from tokensvc.binding import Binding
from tokensvc.errors import InvalidScope
from tokensvc.grants.common import GrantType, token_response
from tokensvc.grants.target import scope_for, target
from tokensvc.models import Client
from tokensvc.service import TokenService


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    requested = params.get("scope")
    if requested is not None and "openid" in scopes.parse(requested):
        raise InvalidScope("openid needs a person; client_credentials has none.")
    to = await target(svc, client, params)
    allowed = tuple(sorted(client.scopes - scopes.PERSON_SCOPES))
    scope = await scope_for(svc, client, to, requested, allowed, person=False)
    ttl = to.lifetime(svc.minter.access_ttl)
    access = svc.minter.access_token(
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        now=int(svc.clock()),
        binding=binding,
        audience=to.audience(svc.minter.audience),
        ttl=ttl,
    )
    return token_response(
        svc, token_type=binding.token_type, access_token=access, scope=scope, expires_in=ttl
    )


GRANT = GrantType("client_credentials", frozenset({"scope", "resource"}), handle)
