"""POST /token over real HTTP: every grant and client-authentication method, and every
RFC 6749 §5.2 error with its status and headers. Runs over memory and Redis+Postgres."""

from __future__ import annotations

import hashlib

import pytest

from tests.harness import Harness, pkce_pair
from tokensvc.models import Client
from tokensvc.opaque import b64url

pytestmark = pytest.mark.asyncio


def assert_no_store(reply) -> None:
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Pragma"] == "no-cache"


def assert_error(reply, status: int, error: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body["error"] == error
    assert isinstance(reply.body["error_description"], str) and reply.body["error_description"]
    assert_no_store(reply)


async def code_client(harness: Harness, method: str) -> tuple[Client, str | None]:
    """A client of codes and refreshes that authenticates with `method` (`none`: public)."""
    return await harness.client(
        grant_types=["authorization_code", "refresh_token"],
        auth_method=method,
        public=method == "none",
    )


# --- client_credentials --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_client_credentials(harness: Harness, method: str) -> None:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["api:read api:write"], auth_method=method
    )
    reply = await harness.token(client, secret, grant_type="client_credentials", scope="api:read")
    assert reply.status == 200, reply.body
    assert_no_store(reply)
    body = reply.body
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == harness.settings.access_token_ttl
    assert body["scope"] == "api:read"
    claims = await harness.verify(
        body["access_token"], typ="at+jwt", sub=client.client_id, client_id=client.client_id
    )
    assert claims["scope"] == "api:read"
    assert claims["aud"] == harness.settings.issuer
    assert claims["exp"] - claims["iat"] == harness.settings.access_token_ttl
    assert len(claims["jti"]) >= 16


async def test_client_credentials_default_and_invalid_scope(harness: Harness) -> None:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["api:read api:write"]
    )
    reply = await harness.token(client, secret, grant_type="client_credentials")
    assert reply.status == 200
    assert reply.body["scope"] == "api:read api:write"
    assert_error(
        await harness.token(client, secret, grant_type="client_credentials", scope="api:admin"),
        400,
        "invalid_scope",
    )
    assert_error(
        await harness.token(client, secret, grant_type="client_credentials", scope="openid"),
        400,
        "invalid_scope",
    )


# --- authorization_code ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
async def test_authorization_code(harness: Harness, method: str) -> None:
    client, secret = await code_client(harness, method)
    code, verifier = await harness.mint_code(client, acr="urn:mace:incommon:iap:silver")
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    assert_no_store(reply)
    body = reply.body
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "id_token",
    }
    assert body["scope"] == "openid profile email"
    access = await harness.verify(
        body["access_token"], typ="at+jwt", sub="user-123", client_id=client.client_id
    )
    assert access["scope"] == "openid profile email"
    id_claims = await harness.verify(
        body["id_token"],
        typ="JWT",
        sub="user-123",
        aud=client.client_id,
        azp=client.client_id,
        nonce="n-0S6_WzA2Mj",
    )
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert id_claims["at_hash"] == b64url(digest[:16])
    assert id_claims["auth_time"] == int(harness.clock()) - 5
    assert id_claims["amr"] == ["pwd"]
    assert id_claims["sid"] == "session-1"
    assert id_claims["acr"] == "urn:mace:incommon:iap:silver"
    assert id_claims["email"] == "ada@example.com"
    assert id_claims["name"] == "Ada Lovelace"
    assert len(body["refresh_token"]) >= 43  # 256 bits, base64url


async def test_code_without_openid_has_no_id_token_and_no_refresh_without_grant(
    harness: Harness,
) -> None:
    client, secret = await harness.client(grant_types=["authorization_code"])
    code, verifier = await harness.mint_code(client, scope="profile", nonce=None)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"access_token", "token_type", "expires_in", "scope"}


async def test_confidential_client_without_pkce(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(
        client, code_challenge=None, code_challenge_method=None
    )
    assert verifier is None
    reply = await harness.exchange(client, secret, code, None)
    assert reply.status == 200, reply.body


async def test_pkce_missing_or_wrong(harness: Harness) -> None:
    client, secret = await harness.client()
    code, _ = await harness.mint_code(client)
    assert_error(await harness.exchange(client, secret, code, None), 400, "invalid_grant")
    code, _ = await harness.mint_code(client)
    wrong, _ = pkce_pair()
    assert_error(await harness.exchange(client, secret, code, wrong), 400, "invalid_grant")
    # A verifier for a code minted without a challenge is a downgrade attempt (RFC 9700 §2.1.1).
    code, _ = await harness.mint_code(client, code_challenge=None, code_challenge_method=None)
    assert_error(await harness.exchange(client, secret, code, wrong), 400, "invalid_grant")


async def test_redirect_uri_mismatch_and_missing(harness: Harness) -> None:
    client, secret = await harness.client(
        redirect_uris=["https://app.example.com/cb", "https://app.example.com/other"]
    )
    code, verifier = await harness.mint_code(client)
    assert verifier is not None
    reply = await harness.token(
        client,
        secret,
        grant_type="authorization_code",
        code=code,
        redirect_uri="https://app.example.com/other",
        code_verifier=verifier,
    )
    assert_error(reply, 400, "invalid_grant")
    reply = await harness.token(
        client, secret, grant_type="authorization_code", code=code, code_verifier=verifier
    )
    assert_error(reply, 400, "invalid_request")


async def test_expired_code(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    harness.clock.advance(harness.settings.code_ttl + 1)
    assert_error(await harness.exchange(client, secret, code, verifier), 400, "invalid_grant")


async def test_code_of_another_client(harness: Harness) -> None:
    owner, _ = await harness.client()
    thief, thief_secret = await harness.client(redirect_uris=list(owner.redirect_uris))
    code, verifier = await harness.mint_code(owner)
    assert_error(await harness.exchange(thief, thief_secret, code, verifier), 400, "invalid_grant")


async def test_code_replay_revokes_refresh_token(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    first = await harness.exchange(client, secret, code, verifier)
    assert first.status == 200
    refresh = first.body["refresh_token"]
    second = await harness.exchange(client, secret, code, verifier)
    assert_error(second, 400, "invalid_grant")
    reply = await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    assert_error(reply, 400, "invalid_grant")


# --- refresh_token ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
async def test_refresh_rotates(harness: Harness, method: str) -> None:
    client, secret = await code_client(harness, method)
    code, verifier = await harness.mint_code(client)
    first = (await harness.exchange(client, secret, code, verifier)).body
    reply = await harness.token(
        client,
        secret,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope="openid email",
    )
    assert reply.status == 200, reply.body
    assert_no_store(reply)
    body = reply.body
    assert body["refresh_token"] != first["refresh_token"]
    assert body["scope"] == "openid email"
    claims = await harness.verify(body["id_token"], typ="JWT", sub="user-123", aud=client.client_id)
    assert "nonce" not in claims  # OIDC Core §12.2
    assert claims["auth_time"] == int(harness.clock()) - 5
    again = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert again.status == 200
    assert again.body["scope"] == "openid profile email"  # the family keeps its full scope


async def test_refresh_errors(harness: Harness) -> None:
    client, secret = await harness.client()
    other, other_secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    refresh = (await harness.exchange(client, secret, code, verifier)).body["refresh_token"]
    assert_error(
        await harness.token(other, other_secret, grant_type="refresh_token", refresh_token=refresh),
        400,
        "invalid_grant",
    )
    assert_error(
        await harness.token(
            client, secret, grant_type="refresh_token", refresh_token=refresh, scope="api:read"
        ),
        400,
        "invalid_scope",
    )
    assert_error(
        await harness.token(
            client, secret, grant_type="refresh_token", refresh_token="not-a-token"
        ),
        400,
        "invalid_grant",
    )
    assert_error(
        await harness.token(client, secret, grant_type="refresh_token"), 400, "invalid_request"
    )
    # None of the failures above spent the token.
    ok = await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    assert ok.status == 200, ok.body


async def test_refresh_token_expires(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    refresh = (await harness.exchange(client, secret, code, verifier)).body["refresh_token"]
    harness.clock.advance(harness.settings.refresh_token_ttl + 1)
    assert_error(
        await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh),
        400,
        "invalid_grant",
    )


# --- client authentication and §5.2 errors --------------------------------------------------------


async def test_invalid_client_basic_has_401_and_challenge(harness: Harness) -> None:
    client, _ = await harness.client()
    reply = await harness.post_token(
        {"grant_type": "client_credentials"}, basic=(client.client_id, "wrong-secret")
    )
    assert_error(reply, 401, "invalid_client")
    assert reply.headers["WWW-Authenticate"].startswith("Basic")
    reply = await harness.post_token(
        {"grant_type": "client_credentials"}, basic=("no-such-client", "x")
    )
    assert_error(reply, 401, "invalid_client")
    assert reply.headers["WWW-Authenticate"].startswith("Basic")


async def test_invalid_client_post_and_wrong_method(harness: Harness) -> None:
    basic_client, basic_secret = await harness.client()
    post_client, post_secret = await harness.client(auth_method="client_secret_post")
    assert post_secret is not None and basic_secret is not None
    # A client must use the one method it registered.
    reply = await harness.post_token(
        {
            "grant_type": "client_credentials",
            "client_id": basic_client.client_id,
            "client_secret": basic_secret,
        }
    )
    assert_error(reply, 401, "invalid_client")
    reply = await harness.post_token(
        {"grant_type": "client_credentials"}, basic=(post_client.client_id, post_secret)
    )
    assert_error(reply, 401, "invalid_client")
    reply = await harness.post_token(
        {
            "grant_type": "client_credentials",
            "client_id": post_client.client_id,
            "client_secret": post_secret + "x",
        }
    )
    assert_error(reply, 401, "invalid_client")
    # A confidential client presenting no secret at all is not a public client.
    reply = await harness.post_token(
        {"grant_type": "client_credentials", "client_id": post_client.client_id}
    )
    assert_error(reply, 401, "invalid_client")
    # No client identification at all.
    assert_error(
        await harness.post_token({"grant_type": "client_credentials"}), 401, "invalid_client"
    )


async def test_two_authentication_methods_is_invalid_request(harness: Harness) -> None:
    client, secret = await harness.client()
    assert secret is not None
    reply = await harness.post_token(
        {"grant_type": "client_credentials", "client_secret": secret},
        basic=(client.client_id, secret),
    )
    assert_error(reply, 400, "invalid_request")


async def test_public_client_cannot_skip_pkce_or_use_secret_grants(harness: Harness) -> None:
    client, _ = await harness.client(grant_types=["authorization_code"], public=True)
    reply = await harness.post_token(
        {"grant_type": "client_credentials", "client_id": client.client_id}
    )
    assert_error(reply, 400, "unauthorized_client")


async def test_unauthorized_client(harness: Harness) -> None:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["api:read"]
    )
    reply = await harness.token(client, secret, grant_type="refresh_token", refresh_token="x")
    assert_error(reply, 400, "unauthorized_client")


async def test_unsupported_and_missing_grant_type(harness: Harness) -> None:
    client, secret = await harness.client()
    assert_error(
        await harness.token(client, secret, grant_type="urn:example:magic"),
        400,
        "unsupported_grant_type",
    )
    assert_error(await harness.token(client, secret), 400, "invalid_request")
