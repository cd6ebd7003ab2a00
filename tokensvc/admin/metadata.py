"""The admin API's JSON: RFC 7591 §2 client metadata in and out, and the resource, federation
and grant records with the fields of the CLI's JSON.

Reading follows RFC 7591: `grant_types` defaults to `["authorization_code"]` and
`token_endpoint_auth_method` to `client_secret_basic` (§2), metadata this server does not
understand is ignored (§2), and a value of the wrong type is `invalid_client_metadata`
(§3.2.2). What the values mean is checked once, by `tokensvc.registration`, for the CLI and
the API alike; its messages name CLI flags, which `api_message` turns into metadata names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tokensvc.admin.operations import ClientFields
from tokensvc.models import Client, Credentials, Federation, GrantSummary, Resource

INVALID_METADATA = "invalid_client_metadata"
INVALID_REDIRECT_URI = "invalid_redirect_uri"


class MetadataError(ValueError):
    """A body the admin API refuses: `error` is the RFC 7591 §3.2.2 code."""

    def __init__(self, description: str, error: str = INVALID_METADATA) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


# Our metadata names (besides RFC 7591's) for what `Credentials` holds.
_CREDENTIALS = {
    "jwks_uri": "jwks_uri",
    "federated_issuer": "federated_issuer",
    "federated_subject": "federated_subject",
    "tls_client_auth_subject_dn": "tls_subject_dn",
    "tls_client_auth_san_dns": "tls_san_dns",
    "tls_client_auth_san_uri": "tls_san_uri",
}
_FLAGS = {
    "--name": "client_name",
    "--grant-type": "grant_types",
    "--redirect-uri": "redirect_uris",
    "--scope": "scope",
    "--auth-method": "token_endpoint_auth_method",
    "--public": "token_endpoint_auth_method none",
    "--jwks-file": "jwks",
    "--resource": "resources",
    "--rate-limit": "rate_limit",
    "--rate-burst": "rate_burst",
    "--post-logout-redirect-uri": "post_logout_redirect_uris",
    "--backchannel-logout-uri": "backchannel_logout_uri",
    "--identifier": "identifier",
    "--issuer": "issuer",
    "--access-token-ttl": "access_token_ttl",
    **{"--" + field.replace("_", "-"): name for name, field in _CREDENTIALS.items()},
}
_FLAG = re.compile(r"--[a-z][a-z-]*")


def api_message(message: str) -> str:
    """A registration message with each CLI flag replaced by the JSON name it comes from."""
    return _FLAG.sub(lambda m: _FLAGS.get(m.group(), m.group()), message)


def client_fields(body: object) -> ClientFields:
    """RFC 7591 metadata as the arguments of a registration."""
    doc = _object(body)
    method = _text(doc, "token_endpoint_auth_method") or "client_secret_basic"
    grant_types = _texts(doc, "grant_types", ["authorization_code"])
    response_types = _texts(doc, "response_types", [])
    if not set(response_types) <= {"code"}:
        raise MetadataError("response_types: only 'code' is supported")
    scope = _text(doc, "scope")
    jwks = doc.get("jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise MetadataError("jwks must be a JWK Set (a JSON object)")
    credentials = Credentials(
        jwks=jwks, **{field: _text(doc, name) for name, field in _CREDENTIALS.items()}
    )
    return ClientFields(
        name=_text(doc, "client_name") or "",
        grant_types=grant_types,
        redirect_uris=_texts(doc, "redirect_uris", []),
        scope_list=[scope] if scope else [],
        public=method == "none",
        auth_method=method,
        require_consent=_flag(doc, "require_consent"),
        rate_limit=_number(doc, "rate_limit"),
        rate_burst=_whole(doc, "rate_burst"),
        credentials=credentials,
        resources=_texts(doc, "resources", []),
        dpop_bound=_flag(doc, "dpop_bound_access_tokens"),
        require_par=_flag(doc, "require_pushed_authorization_requests"),
        reuse_access_token=_flag(doc, "reuse_access_token"),
        post_logout_redirect_uris=_texts(doc, "post_logout_redirect_uris", []),
        backchannel_logout_uri=_text(doc, "backchannel_logout_uri"),
    )


def client_metadata(client: Client) -> dict[str, Any]:
    """What is registered, by RFC 7591 names (never a secret or its hash); a body `PUT`
    accepts as it is."""
    c = client.credentials
    view: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at),
        "client_name": client.name,
        "grant_types": sorted(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "scope": " ".join(sorted(client.scopes)),
        "token_endpoint_auth_method": client.auth_method,
        "resources": list(client.resources),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "dpop_bound_access_tokens": client.dpop_bound,
        "require_pushed_authorization_requests": client.require_par,
        "reuse_access_token": client.reuse_access_token,
        "require_consent": client.require_consent,
    }
    optional: dict[str, Any] = {
        "jwks": c.jwks,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "rate_limit": client.rate_limit,
        "rate_burst": client.rate_burst,
        **{name: getattr(c, field) for name, field in _CREDENTIALS.items()},
    }
    view.update((k, v) for k, v in optional.items() if v is not None)
    if client.previous_secret_expires_at is not None:
        view["previous_secret_expires_at"] = int(client.previous_secret_expires_at)
    return view


def with_secret(view: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """RFC 7591 §3.2.1: a secret issued now, shown this once; `client_secret_expires_at` 0,
    as it never expires by itself."""
    if secret is None:
        return view
    return view | {"client_secret": secret, "client_secret_expires_at": 0}


def resource_view(resource: Resource) -> dict[str, Any]:
    return {
        "identifier": resource.identifier,
        "scopes": sorted(resource.scopes),
        "name": resource.name,
        "access_token_ttl": resource.access_token_ttl,
    }


def federation_view(federation: Federation) -> dict[str, Any]:
    keys: dict[str, Any] = (
        {"jwks_uri": federation.jwks_uri} if federation.jwks is None else {"jwks": federation.jwks}
    )
    return {"issuer": federation.issuer, **keys}


def grant_view(grant: GrantSummary) -> dict[str, Any]:
    return {
        "grant_id": grant.grant_id,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "created_at": int(grant.created_at),
        "resources": list(grant.resources),
    }


def resource_fields(body: object) -> dict[str, Any]:
    """`POST /admin/resources`: the arguments of `registration.new_resource`."""
    doc = _object(body)
    return {
        "identifier": _text(doc, "identifier") or "",
        "scopes": _texts(doc, "scopes", []),
        "name": _text(doc, "name"),
        "access_token_ttl": _whole(doc, "access_token_ttl"),
    }


def federation_fields(body: object) -> dict[str, Any]:
    """`POST /admin/federations`: the arguments of `registration.new_federation`."""
    doc = _object(body)
    jwks = doc.get("jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise MetadataError("jwks must be a JWK Set (a JSON object)")
    return {"issuer": _text(doc, "issuer") or "", "jwks": jwks, "jwks_uri": _text(doc, "jwks_uri")}


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MetadataError("the body must be a JSON object")
    return body


def _text(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise MetadataError(f"{name} must be a string")
    return value


def _texts(doc: Mapping[str, Any], name: str, default: list[str]) -> list[str]:
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MetadataError(f"{name} must be an array of strings")
    return value


def _flag(doc: Mapping[str, Any], name: str) -> bool:
    value = doc.get(name, False)
    if not isinstance(value, bool):
        raise MetadataError(f"{name} must be true or false")
    return value


def _number(doc: Mapping[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise MetadataError(f"{name} must be a number")
    return value


def _whole(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise MetadataError(f"{name} must be a whole number")
    return value
