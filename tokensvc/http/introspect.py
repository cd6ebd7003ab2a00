"""`POST /introspect` (RFC 7662): client-authenticated; `{"active": false}` for anything that
is not a live token (expired, revoked, foreign, garbage), and nothing else about it.

Any confidential client (typically a resource server) may introspect access tokens; a refresh
token is only ever described to the client it was issued to.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tokensvc import accesstoken
from tokensvc.errors import InvalidRequest, UnauthorizedClient
from tokensvc.http.appkeys import SERVICE
from tokensvc.http.clientform import authenticated_form
from tokensvc.http.responses import NO_STORE, json_response
from tokensvc.models import Client
from tokensvc.opaque import lookup_hash
from tokensvc.service import TokenService
from tokensvc.signing.verify import InvalidToken

INACTIVE: dict[str, Any] = {"active": False}
# `cnf`: what the token is bound to (RFC 8705 §3.2, RFC 7662 §2.2); `act`: who acts for `sub`.
_ACCESS_CLAIMS = (
    "scope",
    "client_id",
    "sub",
    "exp",
    "iat",
    "iss",
    "aud",
    "jti",
    "auth_time",
    "cnf",
    "act",  # RFC 8693 §4.1, tokens from token exchange
)


async def _access(svc: TokenService, token: str) -> dict[str, Any]:
    try:
        checked = await accesstoken.check(svc, token)
    except InvalidToken:
        return INACTIVE
    claims = checked.claims
    cnf = claims.get("cnf")
    return {
        "active": True,
        # RFC 9449 §6.2: a DPoP-bound token is of type DPoP.
        "token_type": "DPoP" if isinstance(cnf, dict) and "jkt" in cnf else "Bearer",
        **{c: claims[c] for c in _ACCESS_CLAIMS if c in claims},
    }


async def _refresh(svc: TokenService, client: Client, token: str) -> dict[str, Any]:
    state = await svc.stores.grants.inspect(lookup_hash(token))
    if (
        state is None
        or state.revoked
        or state.retired_at is not None
        or state.expires_at <= svc.clock()
        or state.grant.client_id != client.client_id
    ):
        return INACTIVE
    grant = state.grant
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": grant.scope,
        "client_id": grant.client_id,
        "sub": grant.sub,
        "exp": int(state.expires_at),
        "iss": svc.settings.issuer,
    }


async def introspect(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    client, params = await authenticated_form(request)
    if client.public:
        raise UnauthorizedClient("Public clients may not introspect tokens.")
    token = params.get("token")
    if token is None:
        raise InvalidRequest("token is required.")
    body = (
        await _access(svc, token) if token.count(".") == 2 else await _refresh(svc, client, token)
    )
    return json_response(body, headers=NO_STORE)
