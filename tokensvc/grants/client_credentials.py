"""`client_credentials` (RFC 6749 §4.4): the machine fast path.

No store is written and the client comes from the in-process cache, so a request costs one
secret check and one signature. `sub` is the client itself (RFC 9068 §2.2).
"""

from __future__ import annotations

from collections.abc import Mapping

from tokensvc import scope as scopes
from tokensvc.binding import NO_BINDING, Binding
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
    audience = to.audience(svc.minter.audience)
    now = int(svc.clock())
    # the opt-in machine-token cache (tokensvc.machinetokens): bearer tokens only
    reuse = client.reuse_access_token and binding is NO_BINDING
    if reuse:
        key = audience if isinstance(audience, str) else tuple(audience)
        signer = svc.minter.keys.signer_at(now)
        held = svc.machine_tokens.get(client, scope, key, signer, now)
        if held is not None:  # what is left of it is its expires_in
            return token_response(svc, access_token=held[0], scope=scope, expires_in=held[1])
    access = svc.minter.access_token(
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        now=now,
        binding=binding,
        audience=audience,
        ttl=ttl,
    )
    if reuse:
        svc.machine_tokens.put(client, scope, key, signer, access, now, now + ttl)
    return token_response(
        svc, token_type=binding.token_type, access_token=access, scope=scope, expires_in=ttl
    )


GRANT = GrantType("client_credentials", frozenset({"scope", "resource"}), handle)
