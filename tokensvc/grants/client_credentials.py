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
from tokensvc.models import Client
from tokensvc.service import TokenService


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    machine_scopes = client.scopes - scopes.PERSON_SCOPES
    requested = params.get("scope")
    if requested is not None and "openid" in scopes.parse(requested):
        raise InvalidScope("openid needs a person; client_credentials has none.")
    scope = scopes.narrow(requested, machine_scopes, " ".join(sorted(machine_scopes)))
    access = svc.minter.access_token(
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        now=int(svc.clock()),
        binding=binding,
    )
    return token_response(svc, access_token=access, scope=scope)


GRANT = GrantType("client_credentials", frozenset({"scope"}), handle)
