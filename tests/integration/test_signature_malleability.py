"""A malleated ES256 signature (s replaced by n - s, SEC 1 v2 §4.1.4) verifies in any JOSE
library, yet is a second string for the same token: /userinfo and /introspect refuse it, and
accept the token as we signed it. Over real HTTP and both backends."""

from __future__ import annotations

import base64

import pytest

from tests.harness import Harness, Reply

pytestmark = pytest.mark.asyncio

# The order of P-256 (SEC 2 v2 §2.4.2).
N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def s_of(token: str) -> int:
    segment = token.rsplit(".", 1)[1]
    return int.from_bytes(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))[32:], "big")


def flip_s(token: str) -> str:
    """The same token with (r, n - s) for (r, s): the other form of the same signature."""
    head, _, segment = token.rpartition(".")
    signature = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    flipped = signature[:32] + (N - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")
    return head + "." + base64.urlsafe_b64encode(flipped).rstrip(b"=").decode()


async def userinfo(harness: Harness, token: str) -> Reply:
    headers = {"Authorization": f"Bearer {token}"}
    async with harness.http.get(harness.public_url + "/userinfo", headers=headers) as resp:
        return Reply(resp.status, resp.headers, await resp.json(content_type=None))


async def test_high_s_access_token_is_refused(harness: Harness) -> None:
    client, secret = await harness.client()
    resource, resource_secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["a"]
    )
    code, verifier = await harness.mint_code(client)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    token = reply.body["access_token"]
    flipped = flip_s(token)
    harness.remember(flipped)
    # A relying party's library takes both strings: the signature is valid either way.
    assert (await harness.verify(flipped, typ="at+jwt"))["jti"] == (
        await harness.verify(token, typ="at+jwt")
    )["jti"]

    ok = await userinfo(harness, token)
    assert ok.status == 200 and ok.body["sub"] == "user-123"
    refused = await userinfo(harness, flipped)
    assert refused.status == 401, refused.body
    assert refused.body["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]

    async def introspect(t: str) -> Reply:
        return await harness.post_token_like("/introspect", resource, resource_secret, token=t)

    assert (await introspect(token)).body["active"] is True
    assert (await introspect(flipped)).body == {"active": False}
    # What is accepted is what we sign: low-S, for the ID token too (nothing accepts one back).
    assert s_of(token) <= N // 2 and s_of(reply.body["id_token"]) <= N // 2
