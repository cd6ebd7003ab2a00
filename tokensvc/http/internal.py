"""The internal listener: what the login front-end may ask of the token service.

Every request must carry `Authorization: Bearer $TOKENSVC_INTERNAL_TOKEN` (compared in constant
time). `POST /internal/codes` mints a code only after checking what the token endpoint will rely
on: the client, its exact redirect URI, the scope and PKCE. `POST /internal/pushed` hands out a
pushed authorization request once (RFC 9126 §4). The sign-out and the account page end
sessions, list a person's grants and revoke them through `/internal/sessions/end` and
`/internal/access/*`; `GET /internal/jwks` is the published key set, for checking an
`id_token_hint` where the public listener is not reachable.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from tokensvc import pkce
from tokensvc import scope as scopes
from tokensvc.errors import InvalidRequest, OAuthError, UnauthorizedClient
from tokensvc.grants.target import ISSUER, resolve, scope_for
from tokensvc.http import par
from tokensvc.http.appkeys import SERVICE
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import json_response
from tokensvc.jsonshape import json_problem
from tokensvc.models import Client, CodeRecord, Grant
from tokensvc.opaque import CODE_BYTES, lookup_hash, new_value
from tokensvc.service import TokenService

# The last second of year 9999: any real auth_time, and well inside what Postgres (bigint), the
# JSON of an ID token and every relying party can hold. A larger one would be minted into a
# code whose exchange then fails to store its grant.
MAX_EPOCH = 253_402_300_799
# User claims go into every ID token of the grant: an OIDC `address` is two levels deep, so six
# leave room for any custom claim, and 256 values is far more than a person's profile holds.
MAX_CLAIMS_DEPTH = 6
MAX_CLAIMS_VALUES = 256
# The body around them: `claims` starts at its second level.
MAX_BODY_DEPTH = MAX_CLAIMS_DEPTH + 1
MAX_BODY_VALUES = MAX_CLAIMS_VALUES + 64


class InvalidInternalClient(OAuthError):
    error = "invalid_client"
    default_description = "Unknown client."


class InvalidRequestUri(OAuthError):
    error = "invalid_request_uri"  # RFC 9126 §7.3
    default_description = "The request_uri is unknown, expired, used or another client's."


def client_view(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "public": client.public,
        "scopes": sorted(client.scopes),
        "grant_types": sorted(client.grant_types),
        "require_consent": client.require_consent,
        "token_endpoint_auth_method": client.auth_method,
        **credentials_view(client),
        # The resources (RFC 8707) it may get tokens for; like its binding, only when it has any.
        **({"resources": list(client.resources)} if client.resources else {}),
        # RFC 9449 §5.2 and RFC 9126 §6, as discovery and registration metadata name them.
        **({"dpop_bound_access_tokens": True} if client.dpop_bound else {}),
        **({"require_pushed_authorization_requests": True} if client.require_par else {}),
        # `client add --reuse-access-token` (tokensvc.machinetokens), only when set.
        **({"reuse_access_token": True} if client.reuse_access_token else {}),
        # OIDC RP-Initiated Logout 1.0 §3.1: where the login front-end may send people after.
        **(
            {"post_logout_redirect_uris": list(client.post_logout_redirect_uris)}
            if client.post_logout_redirect_uris
            else {}
        ),
    }


def credentials_view(client: Client) -> dict[str, Any]:
    """What a client authenticates with, by name only: the issuer and subject it is bound
    to, the certificate name, where its keys are, and the ids of inline keys; never a key."""
    c = client.credentials
    view: dict[str, Any] = {
        name: value
        for name, value in (
            ("jwks_uri", c.jwks_uri),
            ("federated_issuer", c.federated_issuer),
            ("federated_subject", c.federated_subject),
            ("tls_client_auth_subject_dn", c.tls_subject_dn),
            ("tls_client_auth_san_dns", c.tls_san_dns),
            ("tls_client_auth_san_uri", c.tls_san_uri),
        )
        if value is not None
    }
    if c.jwks is not None:
        view["jwks_kids"] = [k.get("kid") for k in c.jwks["keys"]]
    return view


@web.middleware
async def require_bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The internal token on `/internal/*`, the admin token on `/admin/*` (each refused on the
    other's paths); without an admin token, `/admin/*` does not exist (404)."""
    settings = request.app[SERVICE].settings
    admin = request.path.startswith("/admin/") or request.path == "/admin"
    if admin and settings.admin_token is None:
        request[LOG_FIELDS]["error"] = "not_found"
        return json_response({"error": "not_found", "error_description": "Not Found"}, 404)
    expected = (settings.admin_token if admin else settings.internal_token) or ""
    if not _bearer_is(request.headers.get("Authorization", ""), expected):
        request[LOG_FIELDS]["error"] = "unauthorized"
        what = "admin" if admin else "internal"
        return json_response(
            {"error": "unauthorized", "error_description": f"A valid {what} bearer is required."},
            401,
            {"WWW-Authenticate": f'Bearer realm="tokensvc-{what}"'},
        )
    return await handler(request)


def _bearer_is(presented: str, expected: str) -> bool:
    """`Authorization: Bearer <expected>`, compared in constant time. Header bytes that are
    not UTF-8 arrive as surrogate escapes: compared as the raw bytes."""
    return bool(
        presented[:7].lower() == "bearer "
        and expected
        and hmac.compare_digest(
            presented[7:].strip().encode("utf-8", "surrogateescape"), expected.encode()
        )
    )


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's body, which must be a JSON object."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string.")
    return value


# RFC 9449 §10: a JWK SHA-256 thumbprint, base64url without padding.
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


def _resources(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("resource")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise InvalidRequest("resource must be a list of resource identifiers.")
    return tuple(value)


async def _code_record(svc: TokenService, client: Client, body: dict[str, Any]) -> CodeRecord:
    redirect_uri = _text(body, "redirect_uri")
    if redirect_uri not in client.redirect_uris:
        raise InvalidRequest("redirect_uri is not registered for this client.")
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("The client may not use the authorization code grant.")
    # RFC 8707 §2.1: the resources of the authorization request, each the client's; the scope
    # must then belong to them (or be a person scope).
    to = await resolve(svc, client, _resources(body)) if body.get("resource") else ISSUER
    requested = _text(body, "scope") or ""
    allowed = tuple(sorted(client.scopes))
    scope = (
        await scope_for(svc, client, to, requested, allowed, person=True)
        if scopes.parse(requested)
        else ""  # what was asked for, nothing more
    )
    sub = _text(body, "sub")
    auth_time = body.get("auth_time")
    if (
        not isinstance(auth_time, int)
        or isinstance(auth_time, bool)
        or not 0 < auth_time <= MAX_EPOCH
    ):
        raise InvalidRequest("auth_time must be a positive integer (seconds since the epoch).")
    challenge = _text(body, "code_challenge", required=False)
    method = _text(body, "code_challenge_method", required=False)
    if challenge is None:
        if client.public:
            raise InvalidRequest("PKCE (code_challenge with S256) is required for this client.")
        if method is not None:
            raise InvalidRequest("code_challenge_method without code_challenge.")
    else:
        if method != pkce.METHOD:
            raise InvalidRequest("code_challenge_method must be S256.")
        if not pkce.valid_challenge(challenge):
            raise InvalidRequest("code_challenge must be 43 base64url characters.")
    amr = body.get("amr")
    if amr is not None and (
        not isinstance(amr, list) or not all(isinstance(a, str) and a for a in amr)
    ):
        raise InvalidRequest("amr must be a list of strings.")
    claims = body.get("claims") or {}
    if not isinstance(claims, dict):
        raise InvalidRequest("claims must be an object.")
    problem = json_problem(claims, max_depth=MAX_CLAIMS_DEPTH, max_values=MAX_CLAIMS_VALUES)
    if problem is not None:
        raise InvalidRequest(f"claims are refused: {problem}.")
    now = svc.clock()
    grant = Grant(
        grant_id=new_value(16, svc.entropy),
        client_id=client.client_id,
        sub=sub or "",
        scope=scope,
        auth_time=auth_time,
        acr=_text(body, "acr", required=False),
        amr=tuple(amr) if amr is not None else None,
        sid=_text(body, "sid", required=False),
        claims=claims,
        resources=to.identifiers,
    )
    jkt = _text(body, "dpop_jkt", required=False)
    if jkt is not None and not _JKT.fullmatch(jkt):
        raise InvalidRequest("dpop_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url).")
    return CodeRecord(
        grant=grant,
        redirect_uri=redirect_uri or "",
        expires_at=now + svc.settings.code_ttl,
        nonce=_text(body, "nonce", required=False),
        code_challenge=challenge,
        code_challenge_method=method,
        dpop_jkt=jkt,
    )


async def mint_code(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    body = await _json_object(request)
    problem = json_problem(body, max_depth=MAX_BODY_DEPTH, max_values=MAX_BODY_VALUES)
    if problem is not None:
        raise InvalidRequest(f"The body is refused: {problem}.")
    client_id = _text(body, "client_id") or ""
    client = await svc.stores.clients.get(client_id)
    if client is None:
        raise InvalidInternalClient()
    request[LOG_FIELDS]["client_id"] = client_id  # registered: not a string anyone chose
    record = await _code_record(svc, client, body)
    code = new_value(CODE_BYTES, svc.entropy)
    await svc.stores.codes.put(lookup_hash(code), record, svc.settings.code_ttl)
    return json_response(
        {"code": code, "expires_in": svc.settings.code_ttl}, 201, {"Cache-Control": "no-store"}
    )


async def get_client(request: web.Request) -> web.Response:
    client_id = request.match_info["client_id"]
    # No client_id holds NUL (RFC 6749 A.1); Postgres could not even be asked about one.
    client = (
        None if "\x00" in client_id else await request.app[SERVICE].stores.clients.get(client_id)
    )
    if client is None:
        return json_response({"error": "not_found", "error_description": "Unknown client."}, 404)
    request[LOG_FIELDS]["client_id"] = client_id
    view = client_view(client)
    if client.resources:  # for the consent screen: the APIs by name (RFC 8707)
        resources = request.app[SERVICE].stores.resources
        named = {r: found.name for r in client.resources if (found := await resources.get(r))}
        view["resource_names"] = {r: name for r, name in named.items() if name}
    return json_response(view)


async def take_pushed(request: web.Request) -> web.Response:
    """`{"client_id", "request_uri"}`: the request that client pushed there, exactly once."""
    body = await _json_object(request)
    client_id, request_uri = _text(body, "client_id") or "", _text(body, "request_uri") or ""
    pushed = await par.take(request.app[SERVICE], client_id, request_uri)
    if pushed is None:
        raise InvalidRequestUri()
    request[LOG_FIELDS]["client_id"] = client_id  # the one that pushed it: a registered one
    return json_response(pushed, 200, {"Cache-Control": "no-store"})


async def end_session(request: web.Request) -> web.Response:
    """`{"sub", "sid"}`: the login front-end ended that browser session (OIDC RP-Initiated
    Logout 1.0). Its grants without `offline_access` are revoked, and a logout token is owed
    to every client with a grant in it (Back-Channel Logout 1.0, delivered in the background
    by `tokensvc.logout.deliverer`: the answer does not wait for any receiver). Idempotent."""
    body = await _json_object(request)
    sub, sid = _text(body, "sub") or "", _text(body, "sid") or ""
    svc = request.app[SERVICE]
    grants = await svc.stores.grants.end_session(sub, sid, svc.clock())
    reply = {"grants": [{"client_id": g.client_id, "ended": g.ended} for g in grants]}
    return json_response(reply, 200, {"Cache-Control": "no-store"})


async def person_grants(request: web.Request) -> web.Response:
    """`{"sub"}`: the person's live grants, oldest first, for the account page."""
    body = await _json_object(request)
    sub = _text(body, "sub") or ""
    grants = await request.app[SERVICE].stores.grants.of_person(sub)
    reply = {
        "grants": [
            {
                "client_id": g.client_id,
                "scope": g.scope,
                "resources": list(g.resources),
                "created_at": int(g.created_at),
            }
            for g in grants
        ]
    }
    return json_response(reply, 200, {"Cache-Control": "no-store"})


async def revoke_access(request: web.Request) -> web.Response:
    """`{"sub", "client_id"}`: the person removed the client's access from the account page;
    every live grant of that pair is revoked with its refresh tokens (RFC 7009 §2.1: and the
    access tokens of the grant stop introspecting as active). Idempotent."""
    body = await _json_object(request)
    sub, client_id = _text(body, "sub") or "", _text(body, "client_id") or ""
    svc = request.app[SERVICE]
    now = svc.clock()
    revoked = 0
    for grant in await svc.stores.grants.of_person(sub):
        if grant.client_id == client_id:
            await svc.stores.grants.revoke_grant(grant.grant_id, now)
            revoked += 1
    return json_response({"revoked": revoked}, 200, {"Cache-Control": "no-store"})
