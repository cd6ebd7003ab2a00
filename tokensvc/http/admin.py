"""The admin API on the internal listener (README, *Managing clients with the admin API*).

Enabled by `TOKENSVC_ADMIN_TOKEN`: every `/admin/*` request must carry it as a bearer token
(compared in constant time; the login front-end's internal token is refused here, as any other
value is); without it every `/admin/*` path is 404, so an unconfigured service shows nothing.
JSON in and out: RFC 7591 client metadata (`tokensvc.admin.metadata`), its §3.2.2 errors,
404 for unknown ids. Every change goes through `tokensvc.admin.operations`, as the CLI's do,
and writes one audit line.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from tokensvc.admin import metadata
from tokensvc.admin.audit import Audit
from tokensvc.admin.metadata import MetadataError, api_message
from tokensvc.admin.operations import Administration, Conflict
from tokensvc.http.admin_openapi import document
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import NO_STORE, json_response
from tokensvc.jsonshape import json_problem
from tokensvc.registration import (
    BadRedirectUri,
    RegistrationError,
    new_federation,
    new_resource,
)
from tokensvc.service import TokenService

PREFIX = "/admin/"
ADMIN = web.AppKey("admin", Administration)

AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def administration(svc: TokenService) -> Administration:
    """The changes as the admin API makes them: through the service's own stores (their
    caches forget a changed record at once), audited and counted in its metrics."""
    s = svc.stores
    return Administration(
        clients=s.clients,
        resources=s.resources,
        federations=s.federations,
        grants=s.grants,
        audit=Audit("admin-api", svc.metrics),
        clock=svc.clock,
        entropy=svc.entropy,
    )


def problem(status: int, error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, status, NO_STORE)


def not_found(what: str) -> web.Response:
    return problem(404, "not_found", f"No such {what}.")


def _refusals(invalid: str) -> Callable[[AdminHandler], AdminHandler]:
    """Turn what a change refuses into its 4xx: `invalid` is the error code of a bad body
    (RFC 7591 §3.2.2 `invalid_client_metadata` for clients, `invalid_request` elsewhere)."""

    def wrap(handler: AdminHandler) -> AdminHandler:
        @functools.wraps(handler)
        async def refusing(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except MetadataError as exc:
                error = exc.error if invalid == metadata.INVALID_METADATA else invalid
                return _refused(request, 400, error, exc.description)
            except BadRedirectUri as exc:
                return _refused(request, 400, metadata.INVALID_REDIRECT_URI, api_message(str(exc)))
            except RegistrationError as exc:
                return _refused(request, 400, invalid, api_message(str(exc)))
            except Conflict as exc:
                return _refused(request, 409, "conflict", api_message(str(exc)))

        return refusing

    return wrap


def _refused(request: web.Request, status: int, error: str, description: str) -> web.Response:
    request[LOG_FIELDS]["error"] = error
    return problem(status, error, description)


# A body holds at most a client's metadata with its JWK Set: a few levels, a few hundred values.
MAX_BODY_DEPTH = 8
MAX_BODY_VALUES = 4096


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    if b"\\u0000" in raw:  # Postgres text holds no NUL: refused here, not failed there
        raise MetadataError("the body must not contain NUL characters")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MetadataError("the body must be JSON") from None
    shape = json_problem(body, max_depth=MAX_BODY_DEPTH, max_values=MAX_BODY_VALUES)
    if shape is not None:
        raise MetadataError(f"the body is refused: {shape}")
    return body


def _path(request: web.Request, name: str) -> str:
    """A path parameter; one holding NUL or bytes that are not UTF-8 names nothing that can be
    stored, so it is looked up as the empty string, which no record has."""
    value = request.match_info[name]
    try:
        value.encode()
    except UnicodeEncodeError:
        return ""
    return "" if "\x00" in value else value


def _admin(request: web.Request) -> Administration:
    return request.app[ADMIN]


# --- clients -------------------------------------------------------------------------------


@_refusals(metadata.INVALID_METADATA)
async def create_client(request: web.Request) -> web.Response:
    fields = metadata.client_fields(await _body(request))
    client, secret = await _admin(request).create_client(fields)
    request[LOG_FIELDS]["client_id"] = client.client_id
    view = metadata.with_secret(metadata.client_metadata(client), secret)
    return json_response(view, 201, NO_STORE)


async def list_clients(request: web.Request) -> web.Response:
    clients = await _admin(request).clients.list()
    return json_response([metadata.client_metadata(c) for c in clients])


async def get_client(request: web.Request) -> web.Response:
    client = await _admin(request).clients.get(_path(request, "client_id"))
    if client is None:
        return not_found("client")
    return json_response(metadata.client_metadata(client))


@_refusals(metadata.INVALID_METADATA)
async def replace_client(request: web.Request) -> web.Response:
    fields = metadata.client_fields(await _body(request))
    replaced = await _admin(request).replace_client(_path(request, "client_id"), fields)
    if replaced is None:
        return not_found("client")
    client, secret = replaced
    request[LOG_FIELDS]["client_id"] = client.client_id
    return json_response(
        metadata.with_secret(metadata.client_metadata(client), secret), 200, NO_STORE
    )


async def remove_client(request: web.Request) -> web.Response:
    if not await _admin(request).remove_client(_path(request, "client_id")):
        return not_found("client")
    return web.Response(status=204)


@_refusals("invalid_request")
async def rotate_secret(request: web.Request) -> web.Response:
    body = await _body(request, optional=True)
    if not isinstance(body, dict):
        raise MetadataError("the body must be a JSON object")
    ttl = body.get("previous_secret_ttl", 0)
    rotated = await _admin(request).rotate_secret(_path(request, "client_id"), ttl)
    if rotated is None:
        return not_found("client")
    client, secret = rotated
    request[LOG_FIELDS]["client_id"] = client.client_id
    return json_response(
        metadata.with_secret(metadata.client_metadata(client), secret), 200, NO_STORE
    )


# --- resources and federations ---------------------------------------------------------------


@_refusals("invalid_request")
async def create_resource(request: web.Request) -> web.Response:
    resource = new_resource(**metadata.resource_fields(await _body(request)))
    await _admin(request).add_resource(resource)
    return json_response(metadata.resource_view(resource), 201)


async def list_resources(request: web.Request) -> web.Response:
    resources = await _admin(request).resources.list()
    return json_response([metadata.resource_view(r) for r in resources])


async def get_resource(request: web.Request) -> web.Response:
    resource = await _admin(request).resources.get(_path(request, "identifier"))
    if resource is None:
        return not_found("resource")
    return json_response(metadata.resource_view(resource))


async def remove_resource(request: web.Request) -> web.Response:
    if not await _admin(request).remove_resource(_path(request, "identifier")):
        return not_found("resource")
    return web.Response(status=204)


@_refusals("invalid_request")
async def create_federation(request: web.Request) -> web.Response:
    federation = new_federation(**metadata.federation_fields(await _body(request)))
    await _admin(request).add_federation(federation)
    return json_response(metadata.federation_view(federation), 201)


async def list_federations(request: web.Request) -> web.Response:
    federations = await _admin(request).federations.list()
    return json_response([metadata.federation_view(f) for f in federations])


async def get_federation(request: web.Request) -> web.Response:
    federation = await _admin(request).federations.get(_path(request, "issuer"))
    if federation is None:
        return not_found("federation")
    return json_response(metadata.federation_view(federation))


async def remove_federation(request: web.Request) -> web.Response:
    if not await _admin(request).remove_federation(_path(request, "issuer")):
        return not_found("federation")
    return web.Response(status=204)


# --- grants ----------------------------------------------------------------------------------


async def person_grants(request: web.Request) -> web.Response:
    grants = await _admin(request).grants.of_person(_path(request, "sub"))
    return json_response([metadata.grant_view(g) for g in grants])


async def revoke_grant(request: web.Request) -> web.Response:
    if not await _admin(request).revoke_grant(_path(request, "grant_id")):
        return not_found("grant")
    return web.Response(status=204)


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())


def add_routes(app: web.Application, svc: TokenService) -> None:
    """The admin routes, on the internal listener's app (`internal.require_bearer` checks the
    admin token on them)."""
    app[ADMIN] = administration(svc)
    r = app.router
    r.add_get("/admin/openapi.json", openapi)
    r.add_post("/admin/clients", create_client)
    r.add_get("/admin/clients", list_clients)
    r.add_get("/admin/clients/{client_id}", get_client)
    r.add_put("/admin/clients/{client_id}", replace_client)
    r.add_delete("/admin/clients/{client_id}", remove_client)
    r.add_post("/admin/clients/{client_id}/secret", rotate_secret)
    r.add_post("/admin/resources", create_resource)
    r.add_get("/admin/resources", list_resources)
    r.add_get("/admin/resources/{identifier}", get_resource)
    r.add_delete("/admin/resources/{identifier}", remove_resource)
    r.add_post("/admin/federations", create_federation)
    r.add_get("/admin/federations", list_federations)
    r.add_get("/admin/federations/{issuer}", get_federation)
    r.add_delete("/admin/federations/{issuer}", remove_federation)
    r.add_get("/admin/users/{sub}/grants", person_grants)
    r.add_delete("/admin/grants/{grant_id}", revoke_grant)
