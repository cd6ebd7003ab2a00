"""`password` (RFC 6749 §4.3): only for clients registered with this grant type.

RFC 9700 §2.4 says not to use it; some migrations need it. argon2id runs in a worker thread,
and failures are limited per username exactly like the sign-in form (shared in Redis).
"""

from __future__ import annotations

from collections.abc import Mapping

from tokensvc import passwords
from tokensvc.binding import Binding
from tokensvc.claims import released_claims
from tokensvc.errors import InvalidGrant, InvalidRequest
from tokensvc.grants.common import GrantType, bind_refresh, token_response, user_tokens
from tokensvc.grants.target import scope_for, target
from tokensvc.limits.failures import PER_USERNAME
from tokensvc.models import Client, Grant
from tokensvc.opaque import REFRESH_BYTES, lookup_hash, new_value
from tokensvc.service import TokenService


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    username, password = params.get("username"), params.get("password")
    if username is None or password is None:
        raise InvalidRequest("username and password are required.")
    to = await target(svc, client, params)
    allowed = tuple(sorted(client.scopes))
    scope = await scope_for(svc, client, to, params.get("scope"), allowed, person=True)
    checks = [(PER_USERNAME, username.casefold())]
    wait = await svc.stores.failures.retry_after(checks)
    if wait > 0:
        raise InvalidGrant(
            f"Too many failed attempts. Try again in {wait} s.", detail="password rate limited"
        )
    user = await svc.stores.users.by_username(username)
    if not await passwords.verify(user, password):
        await svc.stores.failures.record_failure(checks)
        raise InvalidGrant("Incorrect username or password.")
    assert user is not None
    await svc.stores.failures.clear(checks)
    now = svc.clock()
    grant = Grant(
        grant_id=new_value(16, svc.entropy),
        client_id=client.client_id,
        sub=user.sub,
        scope=scope,
        auth_time=int(now),
        amr=("pwd",),
        claims=released_claims(user, scope),
        resources=to.identifiers,
    )
    grant = bind_refresh(client, grant, binding)
    access, id_token = user_tokens(svc, grant, scope, int(now), binding=binding, to=to)
    refresh = (
        new_value(REFRESH_BYTES, svc.entropy) if "refresh_token" in client.grant_types else None
    )
    await svc.stores.grants.issue(
        grant, lookup_hash(refresh) if refresh else None, now + svc.settings.refresh_token_ttl, now
    )
    return token_response(
        svc,
        token_type=binding.token_type,
        access_token=access,
        scope=scope,
        refresh_token=refresh,
        id_token=id_token,
        expires_in=to.lifetime(svc.minter.access_ttl),
    )


GRANT = GrantType("password", frozenset({"username", "password", "scope", "resource"}), handle)
