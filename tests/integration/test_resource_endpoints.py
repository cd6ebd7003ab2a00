"""/userinfo, /introspect, /revoke and the password grant over real HTTP and both backends."""

from __future__ import annotations

import pytest

from tests.harness import Harness, Reply
from tokensvc.registration import new_user
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks

pytestmark = pytest.mark.asyncio
PASSWORD = "correct horse battery"


async def user_tokens(harness: Harness, **client_kwargs):
    client, secret = await harness.client(**client_kwargs)
    code, verifier = await harness.mint_code(client)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    return client, secret, reply.body


async def userinfo(
    harness: Harness,
    token: str | None,
    method: str = "GET",
    form: dict | None = None,
    header: str | None = None,
) -> Reply:
    headers = {}
    if token is not None:
        headers["Authorization"] = header or f"Bearer {token}"
    async with harness.http.request(
        method, harness.public_url + "/userinfo", data=form, headers=headers
    ) as resp:
        return Reply(resp.status, resp.headers, await resp.json(content_type=None))


async def introspect(harness: Harness, client, secret, token: str, **extra) -> Reply:
    return await harness.post_token_like("/introspect", client, secret, token=token, **extra)


async def revoke(harness: Harness, client, secret, token: str) -> Reply:
    return await harness.post_token_like("/revoke", client, secret, token=token)


# --- /userinfo -------------------------------------------------------------------------------


async def test_userinfo_get_and_post(harness: Harness) -> None:
    _, _, tokens = await user_tokens(harness)
    for reply in (
        await userinfo(harness, tokens["access_token"]),
        await userinfo(harness, tokens["access_token"], "POST"),
        await userinfo(harness, None, "POST", form={"access_token": tokens["access_token"]}),
    ):
        assert reply.status == 200, reply.body
        assert reply.body == {"sub": "user-123", "email": "ada@example.com", "name": "Ada Lovelace"}
        assert reply.headers["Cache-Control"] == "no-store"


async def test_userinfo_follows_the_token_scope(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    narrowed = await harness.token(
        client,
        secret,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        scope="openid email",
    )
    reply = await userinfo(harness, narrowed.body["access_token"])
    assert reply.body == {"sub": "user-123", "email": "ada@example.com"}


async def test_userinfo_errors(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    missing = await userinfo(harness, None)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="tokensvc"'
    for bad in ("garbage", tokens["access_token"][:-4] + "AAAA", tokens["id_token"]):
        reply = await userinfo(harness, bad)
        assert reply.status == 401
        assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]
    both = await userinfo(
        harness, tokens["access_token"], "POST", form={"access_token": tokens["access_token"]}
    )
    assert both.status == 400 and 'error="invalid_request"' in both.headers["WWW-Authenticate"]
    machine = await harness.token(client, secret, grant_type="client_credentials")
    reply = await userinfo(harness, machine.body["access_token"])
    assert reply.status == 403
    assert 'error="insufficient_scope"' in reply.headers["WWW-Authenticate"]
    harness.clock.advance(harness.settings.access_token_ttl + 1)
    expired = await userinfo(harness, tokens["access_token"])
    assert expired.status == 401 and "expired" in expired.headers["WWW-Authenticate"]


async def test_token_signed_by_a_foreign_key_is_refused(make_harness) -> None:
    harness = await make_harness()
    other = await make_harness(keys=keyset_from_jwks(generate_jwks("ES256")))
    _, _, tokens = await user_tokens(other)
    assert (await userinfo(harness, tokens["access_token"])).status == 401


# --- /introspect -------------------------------------------------------------------------------


async def test_introspect_access_and_refresh_tokens(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    resource, resource_secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["a"]
    )
    reply = await introspect(harness, resource, resource_secret, tokens["access_token"])
    assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
    body = reply.body
    assert body["active"] is True and body["sub"] == "user-123"
    assert body["client_id"] == client.client_id and body["scope"] == "openid profile email"
    assert body["token_type"] == "Bearer" and body["iss"] == harness.settings.issuer
    refresh = await introspect(
        harness, client, secret, tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert refresh.body["active"] is True and refresh.body["client_id"] == client.client_id
    assert refresh.body["exp"] > harness.clock()
    # A refresh token is described only to its own client.
    foreign = await introspect(harness, resource, resource_secret, tokens["refresh_token"])
    assert foreign.body == {"active": False}


async def test_introspect_inactive_cases(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    for token in ("garbage", "a.b.c", tokens["id_token"], tokens["access_token"] + "x"):
        reply = await introspect(harness, client, secret, token)
        assert reply.status == 200 and reply.body == {"active": False}
    # A retired refresh token is inactive; its successor is active.
    rotated = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (await introspect(harness, client, secret, tokens["refresh_token"])).body == {
        "active": False
    }
    successor = rotated.body["refresh_token"]
    assert (await introspect(harness, client, secret, successor)).body["active"] is True
    harness.clock.advance(harness.settings.access_token_ttl + 1)
    expired = await introspect(harness, client, secret, tokens["access_token"])
    assert expired.body == {"active": False}


async def test_access_token_of_a_revoked_family_is_inactive(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    rotated = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    harness.clock.advance(harness.settings.refresh_grace + 1)
    reuse = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert reuse.status == 400  # reuse: the family is revoked
    for access in (tokens["access_token"], rotated.body["access_token"]):
        assert (await introspect(harness, client, secret, access)).body == {"active": False}
        assert (await userinfo(harness, access)).status == 401


async def test_introspect_requires_a_confidential_client(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    unauth = await harness.post_token_like("/introspect", None, None, token=tokens["access_token"])
    assert unauth.status == 401 and unauth.body["error"] == "invalid_client"
    public, _ = await harness.client(grant_types=["authorization_code"], public=True)
    reply = await introspect(harness, public, None, tokens["access_token"])
    assert reply.status == 400 and reply.body["error"] == "unauthorized_client"
    missing = await harness.post_token_like("/introspect", client, secret)
    assert missing.status == 400 and missing.body["error"] == "invalid_request"


# --- /revoke -------------------------------------------------------------------------------------


async def test_revoked_access_token_is_inactive_and_refused(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    reply = await revoke(harness, client, secret, tokens["access_token"])
    assert reply.status == 200
    assert (await introspect(harness, client, secret, tokens["access_token"])).body == {
        "active": False
    }
    assert (await userinfo(harness, tokens["access_token"])).status == 401
    # The refresh token of the grant still works: revoking an access token is narrow.
    again = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert again.status == 200
    # A machine token can be revoked too.
    machine = await harness.token(client, secret, grant_type="client_credentials")
    await revoke(harness, client, secret, machine.body["access_token"])
    assert (await introspect(harness, client, secret, machine.body["access_token"])).body == {
        "active": False
    }


async def test_revoking_a_refresh_token_revokes_the_family(harness: Harness) -> None:
    client, secret, tokens = await user_tokens(harness)
    rotated = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    newest = rotated.body["refresh_token"]
    assert (await revoke(harness, client, secret, tokens["refresh_token"])).status == 200
    refused = await harness.token(client, secret, grant_type="refresh_token", refresh_token=newest)
    assert refused.status == 400 and refused.body["error"] == "invalid_grant"
    assert (await userinfo(harness, rotated.body["access_token"])).status == 401


async def test_revoke_unknown_or_foreign_tokens_is_200_and_changes_nothing(
    harness: Harness,
) -> None:
    client, secret, tokens = await user_tokens(harness)
    other, other_secret = await harness.client()
    for token in ("unknown-token", "a.b.c", tokens["refresh_token"], tokens["access_token"]):
        assert (await revoke(harness, other, other_secret, token)).status == 200
    assert (await userinfo(harness, tokens["access_token"])).status == 200
    ok = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert ok.status == 200
    bad = await harness.post_token_like("/revoke", client, "wrong", token="x")
    assert bad.status == 401


# --- password grant ----------------------------------------------------------------------------


async def test_password_grant(harness: Harness) -> None:
    await harness.stores.users.add(
        new_user(username="ada", password=PASSWORD, email="ada@example.com", name="Ada")
    )
    harness.remember(PASSWORD)
    client, secret = await harness.client(grant_types=["password", "refresh_token"])
    reply = await harness.token(
        client,
        secret,
        grant_type="password",
        username="ada",
        password=PASSWORD,
        scope="openid email",
    )
    assert reply.status == 200, reply.body
    assert {"access_token", "refresh_token", "id_token"} <= reply.body.keys()
    claims = await harness.verify(reply.body["id_token"], typ="JWT", aud=client.client_id)
    assert claims["email"] == "ada@example.com" and claims["amr"] == ["pwd"]
    assert claims["auth_time"] == int(harness.clock())
    info = await userinfo(harness, reply.body["access_token"])
    assert info.body["email"] == "ada@example.com" and "name" not in info.body


async def test_password_grant_is_off_unless_registered(harness: Harness) -> None:
    client, secret = await harness.client()
    reply = await harness.token(
        client, secret, grant_type="password", username="ada", password=PASSWORD
    )
    assert reply.status == 400 and reply.body["error"] == "unauthorized_client"


async def test_password_failures_are_generic_and_limited(harness: Harness) -> None:
    await harness.stores.users.add(new_user(username="ada", password=PASSWORD))
    harness.remember(PASSWORD)
    client, secret = await harness.client(grant_types=["password"])
    wrong = await harness.token(
        client, secret, grant_type="password", username="ada", password="nope nope"
    )
    unknown = await harness.token(
        client, secret, grant_type="password", username="bob", password="nope nope"
    )
    assert wrong.status == unknown.status == 400
    assert wrong.body == unknown.body
    for _ in range(4):
        await harness.token(
            client, secret, grant_type="password", username="ada", password="nope nope"
        )
    locked = await harness.token(
        client, secret, grant_type="password", username="ada", password=PASSWORD
    )
    assert locked.status == 400 and "Try again in" in locked.body["error_description"]
    missing = await harness.token(client, secret, grant_type="password", username="ada")
    assert missing.status == 400 and missing.body["error"] == "invalid_request"
