"""The admin API (README, *Managing clients with the admin API*): clients by RFC 7591 metadata,
secret rotation with an overlap, resources, federations, a person's grants, over real HTTP on
the internal listener, on the memory and the real (Redis + Postgres) backends. Every response
is checked against the service's own OpenAPI document."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.harness import INTERNAL_TOKEN, Harness, Reply
from tests.jose import keypair, public_jwks
from tokensvc.admin.audit import EVENTS
from tokensvc.http.admin_openapi import document

ADMIN_TOKEN = "admin-test-token-0123456789abcdef"
API = "https://api.example.com"


@dataclass
class Admin:
    """A caller of the admin API that checks every answer against `openapi.json`."""

    harness: Harness
    token: str | None = ADMIN_TOKEN
    documented: bool = True  # False: a service without the admin API, which documents nothing

    async def __call__(
        self, method: str, path: str, json: Any = None, *, raw: bytes | None = None
    ) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        h = self.harness
        async with h.http.request(
            method, h.internal_url + path, json=json, data=raw, headers=headers
        ) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            reply = Reply(resp.status, resp.headers, body)
        if isinstance(body, dict):
            h.remember(body.get("client_secret"))
        if self.documented:
            check_against_openapi(method, path, reply)
        return reply


_REGISTRY = Registry().with_resource("urn:admin", Resource(document(), DRAFT202012))


def _template(path: str) -> str:
    """The OpenAPI path template a concrete admin path is an instance of."""
    parts = path.split("?")[0].strip("/").split("/")
    for template in document()["paths"]:
        shape = template.strip("/").split("/")
        if len(shape) == len(parts) and all(
            s.startswith("{") or s == p for s, p in zip(shape, parts, strict=True)
        ):
            return template
    raise AssertionError(f"{path} is not in openapi.json")


def check_against_openapi(method: str, path: str, reply: Reply) -> None:
    """The answer is one the document declares, and its body has the declared schema."""
    operation = document()["paths"][_template(path)][method.lower()]
    declared = operation["responses"]
    assert str(reply.status) in declared, (method, path, reply.status, reply.body)
    content = declared[str(reply.status)].get("content", {}).get("application/json")
    if content and "schema" in content:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **content["schema"]}
        schema = _resolved(schema)
        jsonschema.Draft202012Validator(schema, registry=_REGISTRY).validate(reply.body)


def _resolved(schema: Any) -> Any:
    """Local `#/components/...` references, made absolute against the registered document."""
    if isinstance(schema, dict):
        return {k: (f"urn:admin{v}" if k == "$ref" else _resolved(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolved(v) for v in schema]
    return schema


@pytest.fixture
async def harness(make_harness: Any) -> Harness:
    h: Harness = await make_harness(admin_token=ADMIN_TOKEN)
    h.remember(ADMIN_TOKEN)
    return h


@pytest.fixture
def admin(harness: Harness) -> Admin:
    return Admin(harness)


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def _cc(harness: Harness, client_id: str, secret: str, **params: str) -> Reply:
    return await harness.post_token(
        {"grant_type": "client_credentials", **params}, basic=(client_id, secret)
    )


MACHINE = {
    "client_name": "billing",
    "grant_types": ["client_credentials"],
    "scope": "api:read api:write",
}


# --- the document and the bearer -------------------------------------------------------------


def test_openapi_document_is_valid_openapi_31() -> None:
    validate_openapi(document())
    assert document()["openapi"].startswith("3.1")


async def test_every_admin_route_is_documented_and_every_documented_one_exists(
    harness: Harness,
) -> None:
    from tokensvc.http.apps import internal_app

    served = {
        (route.method.lower(), route.resource.canonical)
        for route in internal_app(harness.svc).router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/admin/")
        and route.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented


async def test_openapi_json_is_served_to_the_admin(admin: Admin) -> None:
    reply = await admin("GET", "/admin/openapi.json")
    assert reply.status == 200
    assert reply.body == document()


async def test_without_an_admin_token_every_admin_path_is_404(make_harness: Any) -> None:
    h: Harness = await make_harness()  # TOKENSVC_ADMIN_TOKEN unset
    for token in (INTERNAL_TOKEN, ADMIN_TOKEN, None):
        caller = Admin(h, token, documented=False)
        for method, path in (
            ("GET", "/admin/openapi.json"),
            ("GET", "/admin/clients"),
            ("POST", "/admin/clients"),
            ("DELETE", "/admin/grants/x"),
        ):
            reply = await caller(method, path, json=MACHINE if method == "POST" else None)
            assert reply.status == 404, (token, method, path)
    assert await h.stores.clients.list() == []


async def test_only_the_admin_token_opens_the_admin_api(harness: Harness) -> None:
    for token in (INTERNAL_TOKEN, ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", "", None):
        reply = await Admin(harness, token)("POST", "/admin/clients", MACHINE)
        assert reply.status == 401, token
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="tokensvc-admin"'
        assert reply.body["error"] == "unauthorized"
    assert await harness.stores.clients.list() == []
    # ... and the admin token opens nothing else on the internal listener.
    reply = await harness.internal("GET", "/internal/clients/x", bearer=ADMIN_TOKEN)
    assert reply.status == 401


# --- clients ---------------------------------------------------------------------------------


async def test_a_client_registered_by_metadata_gets_tokens_with_its_one_time_secret(
    harness: Harness, admin: Admin
) -> None:
    created = await admin("POST", "/admin/clients", MACHINE)
    assert created.status == 201
    body = created.body
    assert body["client_name"] == "billing"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 §2 default
    assert body["client_secret_expires_at"] == 0
    assert abs(body["client_id_issued_at"] - harness.clock()) < 5
    assert created.headers["Cache-Control"] == "no-store"
    token = await _cc(harness, body["client_id"], body["client_secret"], scope="api:read")
    assert token.status == 200, token.body

    shown = await admin("GET", f"/admin/clients/{body['client_id']}")
    assert shown.status == 200
    assert "client_secret" not in shown.body
    assert shown.body == {k: v for k, v in body.items() if not k.startswith("client_secret")}
    listed = await admin("GET", "/admin/clients")
    assert [c["client_id"] for c in listed.body] == [body["client_id"]]
    # Stored hashed only: the store holds no trace of the value shown once.
    stored = await harness.stores.clients.get(body["client_id"])
    assert stored is not None and body["client_secret"] not in repr(stored)


async def test_every_auth_method_and_flag_round_trips_through_the_metadata(
    harness: Harness, admin: Admin
) -> None:
    jwk = keypair("ES256", kid="k1")
    jwks = public_jwks(jwk)
    issuer = "https://kubernetes.default.svc"
    assert (
        await admin("POST", "/admin/federations", {"issuer": issuer, "jwks": jwks})
    ).status == 201
    resource = {"identifier": API, "scopes": ["orders:read"], "name": "Orders"}
    assert (await admin("POST", "/admin/resources", resource)).status == 201
    variants: list[dict[str, Any]] = [
        {"token_endpoint_auth_method": "client_secret_post"},
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks},
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://app.example.com/jwks",
        },
        {
            "token_endpoint_auth_method": "federated_jwt",
            "federated_issuer": issuer,
            "federated_subject": "system:serviceaccount:payments:*",
        },
        {
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=api,O=Example",
        },
        {
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_san_dns": "api.example.com",
        },
        {
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_san_uri": "spiffe://example.org/ns/payments/sa/api",
        },
        {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": jwks},
        {
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": ["https://app.example.com/cb", "com.example.app:/cb"],
            "post_logout_redirect_uris": ["https://app.example.com/bye"],
            "scope": "openid profile",
            "require_consent": True,
            "require_pushed_authorization_requests": True,
            "dpop_bound_access_tokens": True,
        },
        {
            "resources": [API],
            "scope": "orders:read",
            "rate_limit": 50.5,
            "rate_burst": 100,
            "backchannel_logout_uri": "https://app.example.com/backchannel",
            "grant_types": [
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
        },
    ]
    for variant in variants:
        sent = {"client_name": "w", "grant_types": ["client_credentials"], **variant}
        created = await admin("POST", "/admin/clients", sent)
        assert created.status == 201, (variant, created.body)
        shown = (await admin("GET", f"/admin/clients/{created.body['client_id']}")).body
        for name, value in sent.items():
            expected = " ".join(sorted(value.split())) if name == "scope" else value
            if isinstance(value, list) and name == "grant_types":
                expected = sorted(value)
            assert shown[name] == expected, (name, shown)
        secret_methods = ("client_secret_basic", "client_secret_post")
        assert ("client_secret" in created.body) == (
            shown["token_endpoint_auth_method"] in secret_methods
        )
        # What GET shows is a body PUT takes as it is: the same client again.
        again = await admin("PUT", f"/admin/clients/{shown['client_id']}", shown)
        assert again.status == 200, again.body
        assert {k: v for k, v in again.body.items() if not k.startswith("client_secret")} == shown


@pytest.mark.parametrize(
    ("metadata", "error", "words"),
    [
        (
            {"client_name": "x", "redirect_uris": ["http://evil.example/cb"]},
            "invalid_redirect_uri",
            "loopback",
        ),
        (
            {"client_name": "x", "redirect_uris": ["https://app.example.com/cb#frag"]},
            "invalid_redirect_uri",
            "fragment",
        ),
        ({"client_name": "x"}, "invalid_redirect_uri", "redirect_uris"),  # code grant, no URI
        ({"client_name": "x", "grant_types": ["implicit"]}, "invalid_client_metadata", "implicit"),
        (
            {"client_name": "x", "grant_types": "client_credentials"},
            "invalid_client_metadata",
            "array",
        ),
        (
            {"client_name": "", **{"grant_types": ["client_credentials"]}},
            "invalid_client_metadata",
            "client_name",
        ),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "client_name"),
        (
            {**MACHINE, "token_endpoint_auth_method": "client_secret_jwt"},
            "invalid_client_metadata",
            "private_key_jwt",
        ),
        (
            {**MACHINE, "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
            "jwks",
        ),
        ({**MACHINE, "jwks_uri": "https://x.example/jwks"}, "invalid_client_metadata", "jwks_uri"),
        ({**MACHINE, "resources": [API]}, "invalid_client_metadata", "no resource"),
        ({**MACHINE, "rate_limit": "fast"}, "invalid_client_metadata", "rate_limit"),
        ({**MACHINE, "rate_limit": 10, "rate_burst": 0}, "invalid_client_metadata", "rate_burst"),
        ({**MACHINE, "require_consent": "yes"}, "invalid_client_metadata", "require_consent"),
        ({**MACHINE, "scope": 'bad"scope'}, "invalid_client_metadata", "scope"),
        (
            {**MACHINE, "backchannel_logout_uri": "http://rp.example/bc"},
            "invalid_client_metadata",
            "backchannel_logout_uri",
        ),
        ({**MACHINE, "response_types": ["token"]}, "invalid_client_metadata", "response_types"),
        ([MACHINE], "invalid_client_metadata", "object"),
    ],
)
async def test_bad_metadata_is_refused_with_the_rfc_7591_error(
    harness: Harness, admin: Admin, metadata: Any, error: str, words: str
) -> None:
    reply = await admin("POST", "/admin/clients", metadata)
    assert reply.status == 400, reply.body
    assert reply.body["error"] == error
    assert words in reply.body["error_description"]
    assert "--" not in reply.body["error_description"]  # metadata names, not CLI flags
    assert await harness.stores.clients.list() == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"client_name": "a\\u0000b", "grant_types": ["client_credentials"]}',
        b"[" * 100 + b"]" * 100,
    ],
)
async def test_a_body_that_is_not_metadata_is_a_400_and_writes_nothing(
    harness: Harness, admin: Admin, raw: bytes
) -> None:
    reply = await admin("POST", "/admin/clients", raw=raw)
    assert reply.status == 400
    assert reply.body["error"] == "invalid_client_metadata"
    assert await harness.stores.clients.list() == []


async def test_unknown_metadata_is_ignored_as_rfc_7591_asks(admin: Admin) -> None:
    reply = await admin("POST", "/admin/clients", {**MACHINE, "logo_uri": "https://x/l.png"})
    assert reply.status == 201
    assert "logo_uri" not in reply.body


async def test_put_replaces_the_metadata_and_keeps_the_id_and_the_secret(
    harness: Harness, admin: Admin
) -> None:
    created = (await admin("POST", "/admin/clients", MACHINE)).body
    client_id, secret = created["client_id"], created["client_secret"]
    replaced = await admin("PUT", f"/admin/clients/{client_id}", {**MACHINE, "scope": "api:read"})
    assert replaced.status == 200
    assert "client_secret" not in replaced.body
    assert replaced.body["client_id_issued_at"] == created["client_id_issued_at"]
    # In force at once: the removed scope is refused, the same secret still works.
    assert (await _cc(harness, client_id, secret, scope="api:write")).body[
        "error"
    ] == "invalid_scope"
    assert (await _cc(harness, client_id, secret, scope="api:read")).status == 200

    # Moving to a method without a secret drops it; moving back issues a new one, once.
    jwk = keypair("ES256", kid="k1")
    keyed = {**MACHINE, "token_endpoint_auth_method": "private_key_jwt", "jwks": public_jwks(jwk)}
    assert (await admin("PUT", f"/admin/clients/{client_id}", keyed)).status == 200
    assert (await _cc(harness, client_id, secret)).status == 401
    back = await admin("PUT", f"/admin/clients/{client_id}", MACHINE)
    assert back.body["client_secret"] != secret
    assert (await _cc(harness, client_id, back.body["client_secret"])).status == 200
    assert (await _cc(harness, client_id, secret)).status == 401

    missing = await admin("PUT", "/admin/clients/nope", MACHINE)
    assert missing.status == 404
    bad = await admin("PUT", f"/admin/clients/{client_id}", {**MACHINE, "grant_types": ["x"]})
    assert bad.status == 400
    assert (await _cc(harness, client_id, back.body["client_secret"])).status == 200


async def test_a_rotated_secret_overlaps_the_old_one_for_previous_secret_ttl_only(
    harness: Harness, admin: Admin
) -> None:
    created = (await admin("POST", "/admin/clients", MACHINE)).body
    client_id, old = created["client_id"], created["client_secret"]
    rotated = await admin("POST", f"/admin/clients/{client_id}/secret", {"previous_secret_ttl": 60})
    assert rotated.status == 200
    new = rotated.body["client_secret"]
    assert new != old
    assert rotated.body["previous_secret_expires_at"] == int(harness.clock() + 60)
    # During the rollout both work ...
    assert (await _cc(harness, client_id, old)).status == 200
    assert (await _cc(harness, client_id, new)).status == 200
    harness.clock.advance(59)
    assert (await _cc(harness, client_id, old)).status == 200
    # ... then only the new one.
    harness.clock.advance(2)
    refused = await _cc(harness, client_id, old)
    assert refused.status == 401 and refused.body["error"] == "invalid_client"
    assert (await _cc(harness, client_id, new)).status == 200

    # Without an overlap (the default) the old secret stops at once.
    newest = (await admin("POST", f"/admin/clients/{client_id}/secret")).body["client_secret"]
    assert (await _cc(harness, client_id, new)).status == 401
    assert (await _cc(harness, client_id, newest)).status == 200


@pytest.mark.parametrize("ttl", [-1, 1.5, "60", True, 7 * 86_400 + 1])
async def test_a_bad_previous_secret_ttl_is_refused_and_rotates_nothing(
    harness: Harness, admin: Admin, ttl: Any
) -> None:
    created = (await admin("POST", "/admin/clients", MACHINE)).body
    reply = await admin(
        "POST", f"/admin/clients/{created['client_id']}/secret", {"previous_secret_ttl": ttl}
    )
    assert reply.status == 400 and reply.body["error"] == "invalid_request"
    assert (await _cc(harness, created["client_id"], created["client_secret"])).status == 200


async def test_rotating_needs_a_client_with_a_secret(admin: Admin) -> None:
    assert (await admin("POST", "/admin/clients/nope/secret")).status == 404
    public = {
        "client_name": "spa",
        "token_endpoint_auth_method": "none",
        "redirect_uris": ["https://app.example.com/cb"],
    }
    client_id = (await admin("POST", "/admin/clients", public)).body["client_id"]
    reply = await admin("POST", f"/admin/clients/{client_id}/secret")
    assert reply.status == 400 and "no secret" in reply.body["error_description"]


async def test_a_removed_client_is_refused_and_its_grants_go(
    harness: Harness, admin: Admin
) -> None:
    created = (await admin("POST", "/admin/clients", MACHINE)).body
    client_id, secret = created["client_id"], created["client_secret"]
    assert (await _cc(harness, client_id, secret)).status == 200
    assert (await admin("DELETE", f"/admin/clients/{client_id}")).status == 204
    assert (await _cc(harness, client_id, secret)).status == 401
    assert (await admin("GET", f"/admin/clients/{client_id}")).status == 404
    assert (await admin("DELETE", f"/admin/clients/{client_id}")).status == 404


@pytest.mark.parametrize(
    "path", ["/admin/clients/a%00b", "/admin/clients/%FF%FE", "/admin/resources/%00"]
)
async def test_ids_no_store_can_hold_are_404_not_500(admin: Admin, path: str) -> None:
    assert (await admin("GET", path)).status == 404
    assert (await admin("DELETE", path)).status == 404


# --- resources, federations ------------------------------------------------------------------


async def test_resources_are_managed_by_url_encoded_identifier(
    harness: Harness, admin: Admin
) -> None:
    resource = {
        "identifier": API + "/v1",
        "scopes": ["orders:read"],
        "name": "Orders",
        "access_token_ttl": 300,
    }
    created = await admin("POST", "/admin/resources", resource)
    assert created.status == 201
    assert created.body == resource
    assert (await admin("POST", "/admin/resources", resource)).status == 409
    path = "/admin/resources/" + quote(API + "/v1", safe="")
    assert (await admin("GET", path)).body == resource
    assert [r["identifier"] for r in (await admin("GET", "/admin/resources")).body] == [API + "/v1"]
    bad = await admin("POST", "/admin/resources", {"identifier": API, "scopes": ["openid"]})
    assert bad.status == 400 and bad.body["error"] == "invalid_request"
    assert "--" not in bad.body["error_description"]
    assert (await admin("DELETE", path)).status == 204
    assert (await admin("GET", path)).status == 404
    assert (await admin("DELETE", path)).status == 404


async def test_federations_are_managed_by_url_encoded_issuer(
    harness: Harness, admin: Admin
) -> None:
    jwk = keypair("ES256", kid="k1")
    inline = {"issuer": "https://k8s.example.com", "jwks": public_jwks(jwk)}
    remote = {"issuer": "https://spire.example.com", "jwks_uri": "https://spire.example.com/keys"}
    for federation in (inline, remote):
        created = await admin("POST", "/admin/federations", federation)
        assert created.status == 201 and created.body == federation
        assert (await admin("POST", "/admin/federations", federation)).status == 409
        path = "/admin/federations/" + quote(federation["issuer"], safe="")
        assert (await admin("GET", path)).body == federation
    listed = (await admin("GET", "/admin/federations")).body
    assert [f["issuer"] for f in listed] == [inline["issuer"], remote["issuer"]]
    both = await admin(
        "POST", "/admin/federations", {**inline, "issuer": "https://x.example", **remote}
    )
    assert both.status == 400
    private = {"issuer": "https://y.example", "jwks": {"keys": [jwk.as_dict(private=True)]}}
    assert (await admin("POST", "/admin/federations", private)).status == 400
    path = "/admin/federations/" + quote(inline["issuer"], safe="")
    assert (await admin("DELETE", path)).status == 204
    assert (await admin("GET", path)).status == 404


# --- grants ----------------------------------------------------------------------------------


async def test_a_persons_grants_are_listed_and_one_revoked_with_its_tokens(
    harness: Harness, admin: Admin
) -> None:
    client, secret = await harness.client()
    tokens = []
    for _ in range(2):
        code, verifier = await harness.mint_code(client, sub="ada", scope="openid offline_access")
        reply = await harness.exchange(client, secret, code, verifier)
        assert reply.status == 200, reply.body
        tokens.append(reply.body)
    await harness.mint_code(client, sub="bob")  # another person's code: not listed
    listed = await admin("GET", "/admin/users/ada/grants")
    assert listed.status == 200
    assert [g["client_id"] for g in listed.body] == [client.client_id] * 2
    assert all(set(g["scope"].split()) == {"openid", "offline_access"} for g in listed.body)
    first = listed.body[0]["grant_id"]

    assert (await admin("DELETE", f"/admin/grants/{first}")).status == 204
    left = (await admin("GET", "/admin/users/ada/grants")).body
    assert [g["grant_id"] for g in left] == [listed.body[1]["grant_id"]]
    assert (await admin("DELETE", f"/admin/grants/{first}")).status == 404
    assert (await admin("GET", "/admin/users/nobody/grants")).body == []

    # Which of the two was revoked shows at /introspect: its access token is inactive, and
    # its refresh token is refused; the other grant's tokens still work.
    states = []
    for body in tokens:
        introspected = await harness.post_token(
            {"token": body["access_token"]},
            basic=(client.client_id, secret or ""),
            path="/introspect",
        )
        states.append(introspected.body["active"])
    assert sorted(states) == [False, True]
    for body, active in zip(tokens, states, strict=True):
        refreshed = await harness.token(
            client, secret, grant_type="refresh_token", refresh_token=body["refresh_token"]
        )
        assert (refreshed.status == 200) == active, refreshed.body


# --- audit -----------------------------------------------------------------------------------


async def test_every_change_writes_one_audit_line_and_counts_it(
    harness: Harness, admin: Admin, log_sink: Any
) -> None:
    mark = log_sink.mark()
    created = (await admin("POST", "/admin/clients", MACHINE)).body
    client_id = created["client_id"]
    await admin("PUT", f"/admin/clients/{client_id}", MACHINE)
    rotated = (
        await admin("POST", f"/admin/clients/{client_id}/secret", {"previous_secret_ttl": 5})
    ).body
    await admin("POST", "/admin/resources", {"identifier": API, "scopes": ["a"]})
    await admin("DELETE", "/admin/resources/" + quote(API, safe=""))
    await admin(
        "POST",
        "/admin/federations",
        {"issuer": "https://f.example", "jwks_uri": "https://f.example/k"},
    )
    await admin("DELETE", "/admin/federations/" + quote("https://f.example", safe=""))
    await admin("DELETE", f"/admin/clients/{client_id}")
    await admin("DELETE", f"/admin/clients/{client_id}")  # nothing changed: no line
    await admin("GET", "/admin/clients")  # a read: no line

    audit = [e for e in log_sink.events(mark) if e.get("audit")]
    assert [e["event"] for e in audit] == [
        "client.created",
        "client.updated",
        "client.secret_rotated",
        "resource.created",
        "resource.removed",
        "federation.created",
        "federation.removed",
        "client.removed",
    ]
    assert all(e["actor"] == "admin-api" for e in audit)
    assert all(e["client_id"] == client_id for e in audit if e["event"].startswith("client."))
    assert audit[2]["previous_secret_ttl"] == 5
    assert audit[3]["identifier"] == API
    lines = b"\n".join(log_sink.lines[mark:]).decode()
    for secret in (created["client_secret"], rotated["client_secret"], ADMIN_TOKEN):
        assert secret not in lines

    async with harness.http.get(harness.public_url + "/metrics") as resp:
        exposition = await resp.text()
    counts = {
        event: _sample(exposition, f'tokensvc_admin_changes_total{{event="{event}"}}')
        for event in EVENTS
    }
    assert counts["client.created"] == 1
    assert counts["client.removed"] == 1
    assert counts["grant.revoked"] == 0


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
