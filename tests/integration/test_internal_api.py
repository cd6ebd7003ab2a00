"""The internal listener: bearer protection and validation before a code is minted."""

from __future__ import annotations

import pytest

from tests.harness import Harness, pkce_pair
from tokensvc.models import Credentials
from tokensvc.registration import new_client

pytestmark = pytest.mark.asyncio


async def test_requires_the_internal_bearer(harness: Harness) -> None:
    client, _ = await harness.client()
    for bearer in (None, "wrong-token-wrong-token", ""):
        reply = await harness.internal(
            "GET", f"/internal/clients/{client.client_id}", bearer=bearer
        )
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = await harness.internal("POST", "/internal/codes", json={}, bearer="nope")
    assert reply.status == 401


async def test_internal_routes_do_not_exist_publicly(harness: Harness) -> None:
    async with harness.http.post(
        harness.public_url + "/internal/codes", json={}, headers={"Authorization": "Bearer x"}
    ) as resp:
        assert resp.status == 404
    async with harness.http.post(harness.internal_url + "/token", data={}) as resp:
        assert resp.status in (401, 404)


async def test_get_client(harness: Harness) -> None:
    client, _ = await harness.client(redirect_uris=["https://a.example/cb"])
    reply = await harness.internal("GET", f"/internal/clients/{client.client_id}")
    assert reply.status == 200
    assert reply.body == {
        "client_id": client.client_id,
        "name": "Test app",
        "redirect_uris": ["https://a.example/cb"],
        "public": False,
        "scopes": sorted(client.scopes),
        "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
        "require_consent": False,
        "token_endpoint_auth_method": "client_secret_basic",
    }
    missing = await harness.internal("GET", "/internal/clients/nope")
    assert missing.status == 404 and missing.body["error"] == "not_found"


async def test_mint_code_response(harness: Harness) -> None:
    client, _ = await harness.client()
    code, _ = await harness.mint_code(client)
    assert len(code) >= 43  # 256 bits of base64url


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_id": "unknown"}, "invalid_client"),
        ({"redirect_uri": "https://app.example.com/cb/extra"}, "invalid_request"),
        ({"redirect_uri": "https://APP.example.com/cb"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"sub": ""}, "invalid_request"),
        ({"auth_time": "yesterday"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"amr": "pwd"}, "invalid_request"),
        ({"claims": ["email"]}, "invalid_request"),
    ],
)
async def test_mint_code_validation(harness: Harness, change: dict, error: str) -> None:
    client, _ = await harness.client()
    _, challenge = pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    reply = await harness.request_code(client, **(pkce | change))
    assert reply.status == 400, reply.body
    assert reply.body["error"] == error
    assert reply.body["error_description"]


async def test_public_client_needs_pkce(harness: Harness) -> None:
    client, _ = await harness.client(grant_types=["authorization_code"], public=True)
    reply = await harness.request_code(client)
    assert reply.status == 400 and reply.body["error"] == "invalid_request"
    assert "PKCE" in reply.body["error_description"]


async def test_client_without_code_grant_is_refused(harness: Harness) -> None:
    client, _ = await harness.client(grant_types=["client_credentials"], scope_list=["a"])
    reply = await harness.request_code(client, redirect_uri="https://x.example/cb", scope="a")
    assert reply.status == 400


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b"\xff\xfe"])
async def test_mint_code_bad_json(harness: Harness, raw: bytes) -> None:
    async with harness.http.post(
        harness.internal_url + "/internal/codes",
        data=raw,
        headers={
            "Authorization": "Bearer internal-test-token-0123456789",
            "Content-Type": "application/json",
        },
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


async def test_a_clients_credentials_are_shown_by_name_never_as_keys(harness: Harness) -> None:
    """What authenticates a client without a secret is shown (issuer and subject, certificate
    name, key ids, key URL), never a key itself."""
    jwks = {"keys": [{**PUBLIC_KEY, "kid": "key-1"}]}
    cases = {
        "private_key_jwt": (Credentials(jwks=jwks), {"jwks_kids": ["key-1"]}),
        "self_signed_tls_client_auth": (
            Credentials(jwks_uri="https://keys.example/jwks"),
            {"jwks_uri": "https://keys.example/jwks"},
        ),
        "federated_jwt": (
            Credentials(
                federated_issuer="https://kubernetes.default.svc",
                federated_subject="system:serviceaccount:payments:*",
            ),
            {
                "federated_issuer": "https://kubernetes.default.svc",
                "federated_subject": "system:serviceaccount:payments:*",
            },
        ),
        "tls_client_auth": (
            Credentials(tls_san_uri="spiffe://example.org/payments"),
            {"tls_client_auth_san_uri": "spiffe://example.org/payments"},
        ),
    }
    for method, (credentials, shown) in cases.items():
        client, secret = new_client(
            name=method,
            grant_types=["client_credentials"],
            auth_method=method,
            credentials=credentials,
        )
        assert secret is None
        assert await harness.stores.clients.add(client)
        reply = await harness.internal("GET", f"/internal/clients/{client.client_id}")
        assert reply.status == 200
        assert reply.body["token_endpoint_auth_method"] == method
        binding = {k: v for k, v in reply.body.items() if k not in BASE_VIEW}
        assert binding == shown, method
        assert PUBLIC_KEY["x"] not in str(reply.body)


PUBLIC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
BASE_VIEW = {
    "client_id",
    "name",
    "redirect_uris",
    "public",
    "scopes",
    "grant_types",
    "require_consent",
    "token_endpoint_auth_method",
}
