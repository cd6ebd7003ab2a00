"""`GET /admin/openapi.json`: the admin API as an OpenAPI 3.1 document, so platform teams can
generate clients (Terraform providers, operators, CI scripts) from it. Its schemas are JSON
Schema 2020-12; the tests validate the document and every admin response against it."""

from __future__ import annotations

from functools import cache
from typing import Any

from tokensvc.admin.operations import MAX_PREVIOUS_SECRET_TTL
from tokensvc.models import AUTH_METHODS, GRANT_TYPES

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_URIS = {"type": "array", "items": {"type": "string", "format": "uri"}}
_BOOL = {"type": "boolean"}

# RFC 7591 §2 names, and ours; everything `PUT` takes, so `GET`'s output can be sent back.
_METADATA: dict[str, Any] = {
    "client_name": {**_STR, "minLength": 1},
    "grant_types": {"type": "array", "items": {"enum": list(GRANT_TYPES)}},
    "redirect_uris": _URIS,
    "response_types": {"type": "array", "items": {"const": "code"}},
    "scope": {**_STR, "description": "space-separated scope tokens (RFC 6749 §3.3)"},
    "token_endpoint_auth_method": {"enum": list(AUTH_METHODS)},
    "jwks": {"type": "object", "required": ["keys"], "description": "public JWK Set"},
    "jwks_uri": {"type": "string", "format": "uri"},
    "resources": _URIS,
    "post_logout_redirect_uris": _URIS,
    "backchannel_logout_uri": {"type": "string", "format": "uri"},
    "dpop_bound_access_tokens": _BOOL,
    "require_pushed_authorization_requests": _BOOL,
    "reuse_access_token": _BOOL,
    "require_consent": _BOOL,
    "rate_limit": {"type": "number", "exclusiveMinimum": 0},
    "rate_burst": {"type": "integer", "minimum": 1},
    "federated_issuer": {"type": "string", "format": "uri"},
    "federated_subject": _STR,
    "tls_client_auth_subject_dn": _STR,
    "tls_client_auth_san_dns": _STR,
    "tls_client_auth_san_uri": _STR,
}
_CLIENT: dict[str, Any] = {
    "type": "object",
    "required": [
        "client_id",
        "client_id_issued_at",
        "client_name",
        "grant_types",
        "redirect_uris",
        "scope",
        "token_endpoint_auth_method",
    ],
    "properties": {
        "client_id": _STR,
        "client_id_issued_at": {"type": "integer"},
        "previous_secret_expires_at": {
            "type": "integer",
            "description": "until when the secret replaced by the last rotation still works",
        },
        **_METADATA,
    },
}
_ISSUED: dict[str, Any] = {
    "allOf": [
        {"$ref": "#/components/schemas/Client"},
        {
            "type": "object",
            "properties": {
                "client_secret": {"type": "string", "description": "shown this once"},
                "client_secret_expires_at": {"const": 0},
            },
        },
    ]
}
_RESOURCE: dict[str, Any] = {
    "type": "object",
    "required": ["identifier", "scopes"],
    "properties": {
        "identifier": {"type": "string", "description": "absolute URI without a fragment"},
        "scopes": {**_STRS, "minItems": 1},
        "name": {"type": ["string", "null"]},
        "access_token_ttl": {"type": ["integer", "null"], "minimum": 1, "maximum": 86400},
    },
}
_FEDERATION: dict[str, Any] = {
    "type": "object",
    "required": ["issuer"],
    "properties": {
        "issuer": {"type": "string", "format": "uri"},
        "jwks": {"type": "object", "required": ["keys"]},
        "jwks_uri": {"type": "string", "format": "uri"},
    },
    "oneOf": [{"required": ["jwks"]}, {"required": ["jwks_uri"]}],
}
_GRANT: dict[str, Any] = {
    "type": "object",
    "required": ["grant_id", "client_id", "scope", "created_at", "resources"],
    "properties": {
        "grant_id": _STR,
        "client_id": _STR,
        "scope": _STR,
        "created_at": {"type": "integer"},
        "resources": _STRS,
    },
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": _STR, "error_description": _STR},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_ERRORS = {
    "400": _json(_ref("Error"), "invalid_client_metadata, invalid_redirect_uri, invalid_request"),
    "401": _json(_ref("Error"), "no or a wrong admin bearer token"),
}
_NOT_FOUND = {"404": _json(_ref("Error"), "no such record")}
_GONE = {"204": {"description": "removed"}, "401": _ERRORS["401"], **_NOT_FOUND}


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _op(
    operation_id: str, summary: str, responses: dict[str, Any], body: str | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


@cache
def document() -> dict[str, Any]:
    client_id = _param("client_id", "the client's id")
    identifier = _param("identifier", "the resource identifier, URL-encoded")
    issuer = _param("issuer", "the issuer, URL-encoded")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tokensvc admin API",
            "version": "2",
            "description": "Clients (RFC 7591 metadata), secrets, resources (RFC 8707), "
            "federations and grants. Every change is in force on every replica within 1 s.",
        },
        "servers": [{"url": "/", "description": "the token service's internal listener"}],
        "security": [{"adminToken": []}],
        "paths": {
            "/admin/clients": {
                "post": _op(
                    "createClient",
                    "register a client; its secret is returned this once",
                    {"201": _json(_ref("IssuedClient"), "registered"), **_ERRORS},
                    body="ClientMetadata",
                ),
                "get": _op(
                    "listClients",
                    "every client, oldest first",
                    {"200": _json(_list("Client"), "the clients"), "401": _ERRORS["401"]},
                ),
            },
            "/admin/clients/{client_id}": {
                "parameters": [client_id],
                "get": _op(
                    "getClient",
                    "one client",
                    {
                        "200": _json(_ref("Client"), "the client"),
                        "401": _ERRORS["401"],
                        **_NOT_FOUND,
                    },
                ),
                "put": _op(
                    "replaceClient",
                    "replace its metadata; the id and the secret stay",
                    {
                        "200": _json(
                            _ref("IssuedClient"), "replaced (a secret only if newly needed)"
                        ),
                        **_ERRORS,
                        **_NOT_FOUND,
                    },
                    body="ClientMetadata",
                ),
                "delete": _op("removeClient", "remove it with its grants and tokens", _GONE),
            },
            "/admin/clients/{client_id}/secret": {
                "parameters": [client_id],
                "post": {
                    **_op(
                        "rotateSecret",
                        "a new secret; the previous one works previous_secret_ttl seconds more",
                        {"200": _json(_ref("IssuedClient"), "rotated"), **_ERRORS, **_NOT_FOUND},
                    ),
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("SecretRotation")}},
                    },
                },
            },
            "/admin/resources": {
                "post": _op(
                    "createResource",
                    "register a resource server",
                    {
                        "201": _json(_ref("Resource"), "registered"),
                        **_ERRORS,
                        "409": _json(_ref("Error"), "exists"),
                    },
                    body="Resource",
                ),
                "get": _op(
                    "listResources",
                    "every resource, oldest first",
                    {"200": _json(_list("Resource"), "the resources"), "401": _ERRORS["401"]},
                ),
            },
            "/admin/resources/{identifier}": {
                "parameters": [identifier],
                "get": _op(
                    "getResource",
                    "one resource",
                    {
                        "200": _json(_ref("Resource"), "the resource"),
                        "401": _ERRORS["401"],
                        **_NOT_FOUND,
                    },
                ),
                "delete": _op("removeResource", "stop issuing tokens for it", _GONE),
            },
            "/admin/federations": {
                "post": _op(
                    "createFederation",
                    "trust an issuer of workload tokens",
                    {
                        "201": _json(_ref("Federation"), "trusted"),
                        **_ERRORS,
                        "409": _json(_ref("Error"), "trusted already"),
                    },
                    body="Federation",
                ),
                "get": _op(
                    "listFederations",
                    "every federation, oldest first",
                    {"200": _json(_list("Federation"), "the federations"), "401": _ERRORS["401"]},
                ),
            },
            "/admin/federations/{issuer}": {
                "parameters": [issuer],
                "get": _op(
                    "getFederation",
                    "one federation",
                    {
                        "200": _json(_ref("Federation"), "the federation"),
                        "401": _ERRORS["401"],
                        **_NOT_FOUND,
                    },
                ),
                "delete": _op("removeFederation", "stop trusting it", _GONE),
            },
            "/admin/users/{sub}/grants": {
                "parameters": [_param("sub", "the person's subject")],
                "get": _op(
                    "listGrants",
                    "a person's live grants, oldest first",
                    {"200": _json(_list("Grant"), "the grants"), "401": _ERRORS["401"]},
                ),
            },
            "/admin/grants/{grant_id}": {
                "parameters": [_param("grant_id", "the grant's id")],
                "delete": _op(
                    "revokeGrant",
                    "revoke it: its refresh tokens, and its access tokens at introspection",
                    _GONE,
                ),
            },
            "/admin/openapi.json": {
                "get": _op(
                    "openapi",
                    "this document",
                    {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                        "401": _ERRORS["401"],
                    },
                )
            },
        },
        "components": {
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "TOKENSVC_ADMIN_TOKEN",
                }
            },
            "schemas": {
                "ClientMetadata": {
                    "type": "object",
                    "required": ["client_name"],
                    "properties": _METADATA,
                },
                "Client": _CLIENT,
                "IssuedClient": _ISSUED,
                "SecretRotation": {
                    "type": "object",
                    "properties": {
                        "previous_secret_ttl": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_PREVIOUS_SECRET_TTL,
                            "default": 0,
                        }
                    },
                },
                "Resource": _RESOURCE,
                "Federation": _FEDERATION,
                "Grant": _GRANT,
                "Error": _ERROR,
            },
        },
    }
