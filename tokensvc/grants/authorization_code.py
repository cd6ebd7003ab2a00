"""`authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5, OIDC Core §3.1.3).

The code is consumed before any check, in one atomic store call: a failed check still burns
it, and a second use revokes everything issued from the first (RFC 6749 §4.1.2).
"""

from __future__ import annotations

from collections.abc import Mapping

from tokensvc import pkce
from tokensvc import scope as scopes
from tokensvc.binding import Binding
from tokensvc.errors import InvalidGrant, InvalidRequest
from tokensvc.grants.common import GrantType, bind_refresh, token_response, user_tokens
from tokensvc.grants.target import scope_for, target
from tokensvc.models import Client, CodeReplayed
from tokensvc.opaque import REFRESH_BYTES, lookup_hash, new_value
from tokensvc.service import TokenService


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    code = params.get("code")
    redirect_uri = params.get("redirect_uri")
    verifier = params.get("code_verifier")
    if code is None:
        raise InvalidRequest("code is required.")
    if redirect_uri is None:
        raise InvalidRequest("redirect_uri is required.")
    if verifier is not None and not pkce.valid_verifier(verifier):
        raise InvalidRequest("code_verifier must be 43-128 unreserved characters (RFC 7636).")

    record = await svc.stores.codes.consume(lookup_hash(code))
    now = svc.clock()
    if isinstance(record, CodeReplayed):
        await svc.stores.grants.revoke_grant(record.grant_id, now)
        svc.metrics.code_replays.labels(client.client_id).inc()
        svc.metrics.family_revocations.labels(client.client_id, "code_replay").inc()
        raise InvalidGrant(
            "The code was already used; tokens issued from it are revoked.", detail="code replay"
        )
    if record is None or record.expires_at <= now:
        raise InvalidGrant("The code is invalid or expired.")
    grant = bind_refresh(client, record.grant, binding)
    if grant.client_id != client.client_id:
        raise InvalidGrant("The code was issued to another client.")
    if record.redirect_uri != redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request.")
    if record.code_challenge is None:
        if verifier is not None:  # RFC 9700 §2.1.1: refuse a verifier nobody asked for
            raise InvalidGrant("code_verifier sent but no code_challenge was registered.")
        if client.public:
            raise InvalidGrant("PKCE is required for public clients.")
    elif verifier is None or not pkce.verify(verifier, record.code_challenge):
        raise InvalidGrant("PKCE verification failed.")
    if record.dpop_jkt is not None and binding.jkt != record.dpop_jkt:
        # RFC 9449 §10: the code is bound to the key named by dpop_jkt at /authorize.
        raise InvalidGrant("The code is bound to a DPoP key this request did not prove.")

    # RFC 8707 §2.2: `resource` here picks among the resources granted at /authorize.
    to = await target(svc, client, params, granted=grant.resources)
    scope = await scope_for(svc, client, to, None, scopes.parse(grant.scope), person=True)
    issued_at = int(now)
    access, id_token = user_tokens(svc, grant, scope, issued_at, record.nonce, binding, to)
    refresh = None
    if "refresh_token" in client.grant_types:
        refresh = new_value(REFRESH_BYTES, svc.entropy)
    # The grant is stored even without a refresh token: /userinfo and revocation rely on it.
    # A replay that raced this exchange has revoked the grant already: the tokens are still
    # this exchange's to return, but they are stored revoked.
    await svc.stores.grants.issue(
        grant,
        lookup_hash(refresh) if refresh else None,
        now + svc.settings.refresh_token_ttl,
        now,
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


GRANT = GrantType(
    "authorization_code", frozenset({"code", "redirect_uri", "code_verifier", "resource"}), handle
)
