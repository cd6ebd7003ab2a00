"""Token exchange (RFC 8693) and transaction tokens (draft-ietf-oauth-transaction-tokens-10).

A service that holds a token for a subject (a person's access token it was called with, or a
workload's platform token) gets a new token for the next hop: for a resource it may call
(`resource` or `audience`, RFC 8707), with a scope and lifetime never wider or longer than the
subject token's, naming itself, or the actor token's subject, as the actor (`act`, §4.1, with
the subject token's own `act` nested inside). Or it gets a transaction token: a short-lived
JWT that carries the subject and the call's context through the services of one trust domain.

Subject and actor tokens are either access tokens of this service (`...:access_token`: live,
not revoked, their grant not revoked) or tokens of a federation issuer (`...:jwt`: verified as
a `federated_jwt` assertion would be, and naming a registered workload). A token exchanged
from a person's grant carries that grant, so revoking the grant makes it inactive too.
Refresh tokens are never issued (RFC 8693 §2.2.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokensvc import accesstoken
from tokensvc import scope as scopes
from tokensvc.binding import Binding
from tokensvc.errors import InvalidClient, InvalidRequest, InvalidTarget
from tokensvc.grants.common import GrantType
from tokensvc.grants.target import ISSUER, resolve, scope_for
from tokensvc.jsonshape import json_problem
from tokensvc.models import Client, Grant
from tokensvc.repeated import values
from tokensvc.service import TokenService
from tokensvc.signing.verify import InvalidToken

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
TXN_TOKEN = "urn:ietf:params:oauth:token-type:txn_token"
SUBJECT_TYPES = (ACCESS_TOKEN, JWT)
TXN_TOKEN_MAX_TTL = 300  # seconds (the SPEC; the draft wants them short-lived)
MAX_ACT_DEPTH = 8  # nested actors: a call chain, not a loop
MAX_CONTEXT_BYTES = 4096  # request_context / request_details, as JSON


@dataclass(frozen=True, slots=True)
class Subject:
    """What a subject token stands for."""

    sub: str
    scope: tuple[str, ...]
    exp: float
    grant: Grant | None = None  # a person's grant, for tokens exchanged from one
    act: dict[str, Any] | None = None  # who already acts for `sub`


async def _verified(svc: TokenService, token: str, token_type: str, role: str) -> Subject:
    """`token` of `token_type` as a subject (or actor); `invalid_request` saying why not."""
    if token_type == ACCESS_TOKEN:
        try:
            checked = await accesstoken.check(svc, token)
        except InvalidToken as exc:
            raise InvalidRequest(f"The {role}_token is not acceptable: {exc}") from None
        claims = checked.claims
        act = claims.get("act")
        return Subject(
            sub=claims["sub"],
            scope=scopes.parse(checked.scope),
            exp=float(claims["exp"]),
            grant=checked.grant,
            act=act if isinstance(act, dict) else None,
        )
    if token_type == JWT:
        if svc.workloads is None:
            raise InvalidRequest(f"{role}_token_type {JWT} is not accepted here.")
        try:
            claims, workload = await svc.workloads.workload(token)
        except InvalidClient as exc:
            raise InvalidRequest(f"The {role}_token is not acceptable: {exc.description}") from None
        return Subject(
            sub=claims["sub"],
            scope=tuple(sorted(workload.scopes - scopes.PERSON_SCOPES)),
            exp=float(claims["exp"]),
        )
    raise InvalidRequest(f"{role}_token_type must be one of {', '.join(SUBJECT_TYPES)}.")


def _actor(subject: Subject, actor: str) -> dict[str, Any]:
    """RFC 8693 §4.1: the current actor, the subject token's own chain nested inside."""
    act: dict[str, Any] = {"sub": actor}
    if subject.act is not None:
        depth, inner = 1, subject.act
        while isinstance(inner, dict) and isinstance(inner.get("act"), dict):
            depth, inner = depth + 1, inner["act"]
        if depth >= MAX_ACT_DEPTH:
            raise InvalidRequest(f"The delegation chain is longer than {MAX_ACT_DEPTH}.")
        act["act"] = subject.act
    return act


def _context(params: Mapping[str, str], name: str) -> dict[str, Any] | None:
    """A JSON object parameter (`request_context`, `request_details`), bounded."""
    raw = params.get(name)
    if raw is None:
        return None
    if len(raw) > MAX_CONTEXT_BYTES:
        raise InvalidRequest(f"{name} may be at most {MAX_CONTEXT_BYTES} bytes.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{name} must be a JSON object.") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object.")
    problem = json_problem(value, max_depth=8, max_values=256)
    if problem is not None:
        raise InvalidRequest(f"{name} is refused: {problem}.")
    return value


def _response(access: str, issued: str, token_type: str, ttl: int, scope: str) -> bytes:
    return orjson.dumps(
        {
            "access_token": access,
            "issued_token_type": issued,
            "token_type": token_type,
            "expires_in": ttl,
            "scope": scope,
        }
    )


async def handle(
    svc: TokenService, client: Client, params: Mapping[str, str], binding: Binding
) -> bytes:
    token, token_type = params.get("subject_token"), params.get("subject_token_type")
    if token is None or token_type is None:
        raise InvalidRequest("subject_token and subject_token_type are required.")
    requested = params.get("requested_token_type", ACCESS_TOKEN)
    if requested not in (ACCESS_TOKEN, TXN_TOKEN):
        raise InvalidRequest(f"requested_token_type must be {ACCESS_TOKEN} or {TXN_TOKEN}.")
    actor_token, actor_type = params.get("actor_token"), params.get("actor_token_type")
    if (actor_token is None) != (actor_type is None):
        raise InvalidRequest("actor_token and actor_token_type go together.")
    subject = await _verified(svc, token, token_type, "subject")
    actor = (
        await _verified(svc, actor_token, actor_type, "actor")
        if actor_token is not None and actor_type is not None
        else None
    )
    now = svc.clock()
    remaining = int(subject.exp) - int(now)  # whole seconds from the new token's iat
    if remaining < 1:
        raise InvalidRequest("The subject_token has expired.")
    if requested == TXN_TOKEN:
        return _transaction_token(svc, client, params, subject, int(now), remaining)

    wanted = values(params, "resource") + values(params, "audience")
    # The issuer named alone is the default target; among resources it is none of them.
    to = ISSUER if wanted in ((), (svc.minter.audience,)) else await resolve(svc, client, wanted)
    scope = await scope_for(
        svc, client, to, params.get("scope"), subject.scope, person=subject.grant is not None
    )
    ttl = min(to.lifetime(svc.minter.access_ttl), remaining)
    access = svc.minter.access_token(
        sub=subject.sub,
        client_id=client.client_id,
        scope=scope,
        now=int(now),
        grant=subject.grant,
        binding=binding,
        audience=to.audience(svc.minter.audience),
        ttl=ttl,
        act=_actor(subject, actor.sub if actor is not None else client.client_id),
    )
    svc.metrics.exchanges.labels(client.client_id, "access_token").inc()
    return _response(access, ACCESS_TOKEN, binding.token_type, ttl, scope)


def _transaction_token(
    svc: TokenService,
    client: Client,
    params: Mapping[str, str],
    subject: Subject,
    now: int,
    remaining: int,
) -> bytes:
    """draft-ietf-oauth-transaction-tokens-10 §7: `audience` names the trust domain."""
    domain = svc.settings.txn_token_audience or svc.settings.issuer
    if values(params, "audience") != (domain,) or "resource" in params:
        raise InvalidTarget(f"A transaction token's audience is the trust domain {domain}.")
    scope = scopes.narrow(params.get("scope"), subject.scope, " ".join(subject.scope))
    ttl = min(TXN_TOKEN_MAX_TTL, remaining)
    txn = svc.minter.txn_token(
        sub=subject.sub,
        audience=domain,
        scope=scope,
        requester=client.client_id,
        now=now,
        ttl=ttl,
        request_context=_context(params, "request_context"),
        details=_context(params, "request_details"),
    )
    svc.metrics.exchanges.labels(client.client_id, "txn_token").inc()
    return _response(txn, TXN_TOKEN, "N_A", ttl, scope)


GRANT = GrantType(
    GRANT_TYPE,
    frozenset(
        {
            "subject_token",
            "subject_token_type",
            "actor_token",
            "actor_token_type",
            "requested_token_type",
            "resource",
            "audience",
            "scope",
            "request_context",
            "request_details",
        }
    ),
    handle,
)
