"""`POST /revoke` (RFC 7009): a client revokes its own tokens.

A refresh token revokes its whole family (and so every access token of the grant, RFC 7009
§2.1); an access token goes on the `jti` deny-list until it would have expired. Unknown,
foreign or invalid tokens still get 200 (§2.2): the answer reveals nothing.
"""

from __future__ import annotations

from aiohttp import web

from tokensvc import accesstoken
from tokensvc.errors import InvalidRequest
from tokensvc.http.appkeys import SERVICE
from tokensvc.http.clientform import authenticated_form
from tokensvc.http.responses import NO_STORE
from tokensvc.opaque import lookup_hash
from tokensvc.signing.verify import InvalidToken


async def revoke(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    client, params = await authenticated_form(request)
    token = params.get("token")
    if token is None:
        raise InvalidRequest("token is required.")
    if token.count(".") == 2:
        try:
            checked = await accesstoken.check(svc, token)
        except InvalidToken:
            checked = None
        if checked is not None and checked.claims["client_id"] == client.client_id:
            await svc.stores.revoked.add(checked.claims["jti"], checked.claims["exp"])
            svc.machine_tokens.forget(token)
            if client.reuse_access_token:
                # the token may be held for reuse on any replica: a change of its client
                # reaches their client caches, and a reloaded client misses their token caches
                await svc.stores.clients.touch(client.client_id)
    else:
        state = await svc.stores.grants.inspect(lookup_hash(token))
        if state is not None and state.grant.client_id == client.client_id:
            await svc.stores.grants.revoke_grant(state.grant.grant_id, svc.clock())
            svc.metrics.family_revocations.labels(client.client_id, "revoke").inc()
    return web.Response(status=200, headers=NO_STORE)
