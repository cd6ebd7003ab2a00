"""`refresh_token` (RFC 6749 §6, RFC 9700 §4.14): rotation on every use with reuse detection.

The successor response is built before the store's atomic rotate and sealed under a key
derived from the presented token; requests that repeat the same token within the grace window
get that same response back. What a presented token's state means is `grants.rotation`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

from tokensvc import opaque
from tokensvc import scope as scopes
from tokensvc.binding import Binding
from tokensvc.errors import InvalidGrant, InvalidRequest
from tokensvc.grants.common import GrantType, token_response, user_tokens
from tokensvc.grants.rotation import Repeated, Rotated, rotate
from tokensvc.grants.target import scope_for, target
from tokensvc.models import Client, Grant, RefreshState, Successor
from tokensvc.service import TokenService


def _associated(token_hash: bytes, client: Client) -> bytes:
    # Binding the sealed response to the client: another client holding a stolen token
    # cannot open a repeat within the grace window either.
    return token_hash + b"\0" + client.client_id.encode()


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    presented = params.get("refresh_token")
    if presented is None:
        raise InvalidRequest("refresh_token is required.")
    token_hash = opaque.lookup_hash(presented)
    aad = _associated(token_hash, client)
    now = svc.clock()
    body = b""

    async def successor(state: RefreshState) -> Successor:
        nonlocal body
        grant = state.grant
        if grant.client_id != client.client_id:
            raise InvalidGrant("The refresh token was issued to another client.")
        _check_binding(state.grant, binding)
        # RFC 8707 §2.2: `resource` narrows the grant's resources for this access token; the
        # refresh token keeps them all (and its whole scope, RFC 6749 §6).
        to = await target(svc, client, params, granted=grant.resources)
        allowed = scopes.parse(grant.scope)
        scope = await scope_for(svc, client, to, params.get("scope"), allowed, person=True)
        new = opaque.new_value(opaque.REFRESH_BYTES, svc.entropy)
        access, id_token = user_tokens(svc, grant, scope, int(now), binding=binding, to=to)
        body = token_response(
            svc,
            token_type=binding.token_type,
            access_token=access,
            scope=scope,
            refresh_token=new,
            id_token=id_token,
            expires_in=to.lifetime(svc.minter.access_ttl),
        )
        return Successor(
            token_hash=opaque.lookup_hash(new),
            expires_at=now + svc.settings.refresh_token_ttl,
            sealed_response=opaque.seal(presented, aad, body, svc.entropy),
        )

    outcome = await rotate(
        svc.stores.grants, token_hash, now, svc.settings.refresh_grace, successor
    )
    if isinstance(outcome, Rotated):
        svc.metrics.rotated_by(client.client_id).inc()
        return body
    if isinstance(outcome, Repeated):
        if outcome.grant is not None:
            _check_binding(outcome.grant, binding)
        repeated = opaque.unseal(presented, aad, outcome.sealed_response)
        if repeated is not None:
            svc.metrics.grace_repeats.labels(client.client_id).inc()
            return repeated
        raise InvalidGrant("The refresh token was issued to another client.")
    if outcome.reused:
        svc.metrics.family_revocations.labels(client.client_id, "reuse").inc()
        raise InvalidGrant(
            "Refresh token reuse detected; the grant is revoked.", detail="refresh reuse"
        )
    raise InvalidGrant("The refresh token is invalid, expired or revoked.")


def _check_binding(grant: Grant, binding: Binding) -> None:
    """RFC 8705 §4: a public client's refresh token bound to a certificate is refreshed only
    with that certificate."""
    if not grant.binding.admits(binding):
        raise InvalidGrant(
            "The refresh token is bound to a client certificate this request did not present.",
            detail="refresh binding",
        )


GRANT = GrantType("refresh_token", frozenset({"refresh_token", "scope", "resource"}), handle)
