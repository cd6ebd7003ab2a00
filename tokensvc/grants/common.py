"""What every grant shares: its declared shape and the token response (RFC 6749 §5.1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import orjson

from tokensvc.binding import NO_BINDING, Binding
from tokensvc.grants.target import ISSUER, Target
from tokensvc.models import Client, Grant
from tokensvc.service import TokenService

# (service, authenticated client, the grant's parameters, what the request proved: its client
# certificate, RFC 8705 §3; `NO_BINDING` when nothing) -> the JSON body of the response.
Handler = Callable[[TokenService, Client, Mapping[str, str], Binding], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class GrantType:
    """A grant: its `grant_type` string, the parameters it reads (others are ignored), and
    the handler that returns the JSON body of a successful token response."""

    grant_type: str
    parameters: frozenset[str]
    handle: Handler


def token_response(
    svc: TokenService,
    *,
    access_token: str,
    scope: str,
    refresh_token: str | None = None,
    id_token: str | None = None,
    expires_in: int | None = None,
    token_type: str = "Bearer",  # noqa: S107 - a token type, not a secret
) -> bytes:
    """`expires_in`: the access token's lifetime when a resource capped it (RFC 8707);
    `token_type`: DPoP for a DPoP-bound token (RFC 9449 §5, `Binding.token_type`)."""
    body: dict[str, object] = {
        "access_token": access_token,
        "token_type": token_type,
        "expires_in": svc.settings.access_token_ttl if expires_in is None else expires_in,
        "scope": scope,
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    if id_token is not None:
        body["id_token"] = id_token
    return orjson.dumps(body)


def user_tokens(
    svc: TokenService,
    grant: Grant,
    scope: str,
    now: int,
    nonce: str | None = None,
    binding: Binding = NO_BINDING,
    to: Target = ISSUER,
) -> tuple[str, str | None]:
    """The access token and, when `openid` is in `scope`, the ID token for a person's grant.
    `scope` is the one being issued (narrowed at refresh): both tokens carry it, and the ID
    token releases only the claims it covers, as /userinfo does (OIDC Core §5.4). The access
    token is bound to `binding` (RFC 8705 §3) and for `to` (RFC 8707)."""
    access = svc.minter.access_token(
        sub=grant.sub,
        client_id=grant.client_id,
        scope=scope,
        now=now,
        grant=grant,
        binding=binding,
        audience=to.audience(svc.minter.audience),
        ttl=to.lifetime(svc.minter.access_ttl),
    )
    id_token = None
    if "openid" in scope.split(" "):
        id_token = svc.minter.id_token(
            grant=grant, access_token=access, now=now, nonce=nonce, scope=scope
        )
    return access, id_token


def bind_refresh(client: Client, grant: Grant, binding: Binding) -> Grant:
    """The grant to store: a public client's refresh tokens are bound to what its request
    proved (RFC 8705 §4), a confidential client's to its authentication alone."""
    if binding is NO_BINDING or not client.public:
        return grant
    return replace(grant, binding=binding)
