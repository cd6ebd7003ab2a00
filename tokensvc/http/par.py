"""`POST /par`: pushed authorization requests (RFC 9126).

The client authenticates as at `/token` (§2), the parameters `/authorize` takes are validated
as `/authorize` validates them (`tokensvc.authzrequest`, §2.1), and the request is kept for
`PUSHED_TTL` seconds under the SHA-256 of a random `request_uri` (§2.2), to be taken once by
the login front-end through `POST /internal/pushed` (§4). The `request_uri` is a bearer value
for that minute: it is never logged.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import MultiDict

from tokensvc import repeated
from tokensvc.authzrequest import (
    AuthorizeError,
    ClientDescription,
    UnsafeRequest,
    validate,
)
from tokensvc.errors import InvalidRequest
from tokensvc.http.appkeys import SERVICE
from tokensvc.http.clientform import authenticated_form
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import NO_STORE, json_response
from tokensvc.models import Client
from tokensvc.opaque import lookup_hash, new_value
from tokensvc.service import TokenService

PUSHED_TTL = 60  # RFC 9126 §2.2: a short lifetime; one minute is ample for a redirect
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
REQUEST_URI_BYTES = 32


async def par(request: web.Request) -> web.Response:
    """RFC 9126 §2: authenticate, validate, keep, answer with the `request_uri` (§2.2)."""
    svc = request.app[SERVICE]
    client, form = await authenticated_form(request)
    if form.get("client_id", client.client_id) != client.client_id:
        raise InvalidRequest("client_id is not the authenticated client.")
    # The form decoder joins a repeated `resource` with NUL and lets no value hold one.
    params = MultiDict((name, v) for name in form for v in repeated.values(form, name))
    try:
        areq = validate(params, await _description(svc, client), client.client_id, pushed=True)
    except UnsafeRequest as exc:  # §2.3: no redirect URI to answer at, so the same JSON
        raise InvalidRequest(exc.message) from None
    except AuthorizeError as exc:
        request[LOG_FIELDS]["error"] = exc.error
        body = {"error": exc.error, "error_description": exc.description}
        return json_response(body, 400, NO_STORE)
    request_uri = REQUEST_URI_PREFIX + new_value(REQUEST_URI_BYTES, svc.entropy)
    value = orjson.dumps(areq.to_dict())
    await svc.stores.pushed.put(lookup_hash(request_uri), value, PUSHED_TTL)
    return json_response({"request_uri": request_uri, "expires_in": PUSHED_TTL}, 201, NO_STORE)


async def take(svc: TokenService, client_id: str, request_uri: str) -> dict[str, Any] | None:
    """The request `client_id` pushed under `request_uri`, removed as it is read (one use,
    RFC 9126 §4); None when unknown, expired, used or pushed by another client (then it stays,
    so that someone else's guess cannot spend it)."""
    key = lookup_hash(request_uri)
    stored = await svc.stores.pushed.get(key)
    if stored is None or orjson.loads(stored).get("client_id") != client_id:
        return None
    taken = await svc.stores.pushed.take(key)  # None if another replica took it meanwhile
    return None if taken is None else dict(orjson.loads(taken))


async def _description(svc: TokenService, client: Client) -> ClientDescription:
    """The client as validation sees it, with its resources' display names for the consent
    screen, as the internal client view gives them to the login front-end."""
    resources = svc.stores.resources
    named = {r: found.name for r in client.resources if (found := await resources.get(r))}
    return ClientDescription(
        redirect_uris=client.redirect_uris,
        public=client.public,
        scopes=client.scopes,
        grant_types=client.grant_types,
        resources=client.resources,
        resource_names={r: name for r, name in named.items() if name},
        require_par=client.require_par,
    )
