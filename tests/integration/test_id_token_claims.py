"""The ID token and /userinfo release the same claims about a person: those the scope of the
token being issued covers (OIDC Core §5.4), after any narrowing at refresh (RFC 6749 §6).

Over real HTTP and both backends; the ID token is verified like a relying party would.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Harness, Reply

pytestmark = pytest.mark.asyncio

# The claims every ID token carries whatever the scope (OIDC Core §2, §3.1.3.6): what remains
# of an ID token without them is what it says about the person.
PROTOCOL_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "acr", "amr"}
    | {"sid"}
)
EVERYTHING = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "email_verified": True,
    "phone_number": "+44 20 7946 0000",
    "phone_number_verified": False,
    "address": {"country": "GB"},
}
SCOPES = ["openid profile email address phone offline_access"]


async def userinfo(harness: Harness, token: str) -> Reply:
    headers = {"Authorization": f"Bearer {token}"}
    async with harness.http.get(harness.public_url + "/userinfo", headers=headers) as resp:
        return Reply(resp.status, resp.headers, await resp.json(content_type=None))


async def released(harness: Harness, client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """What the ID token says about the person, after checking /userinfo says the same for
    the access token issued with it."""
    claims = await harness.verify(body["id_token"], typ="JWT", sub="user-123", aud=client.client_id)
    person = {k: v for k, v in claims.items() if k not in PROTOCOL_CLAIMS}
    info = await userinfo(harness, body["access_token"])
    assert info.status == 200, info.body
    assert info.body.pop("sub") == "user-123"
    assert info.body == person, "the ID token and /userinfo disagree"
    return person


async def exchange(harness: Harness, scope: str, claims: dict[str, Any]) -> tuple[Any, Any, Any]:
    client, secret = await harness.client(scope_list=SCOPES)
    code, verifier = await harness.mint_code(client, scope=scope, claims=claims)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    assert reply.body["scope"] == scope
    return client, secret, reply.body


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid", set()),
        ("openid email", {"email", "email_verified"}),
        ("openid profile", {"name"}),
        ("openid phone", {"phone_number", "phone_number_verified"}),
        ("openid address", {"address"}),
        ("openid profile email address phone", set(EVERYTHING)),
    ],
)
async def test_code_exchange_releases_only_what_the_scope_covers(
    harness: Harness, scope: str, expected: set[str]
) -> None:
    client, _, body = await exchange(harness, scope, EVERYTHING)
    person = await released(harness, client, body)
    assert person == {k: EVERYTHING[k] for k in expected}


async def test_claims_no_scope_covers_never_reach_the_id_token(harness: Harness) -> None:
    """Claims the front-end sent along that no granted scope covers (and names no scope
    defines at all) stay out of the ID token and out of /userinfo."""
    sent = {"name": "Ada Lovelace", "email": "ada@example.com"}
    sent |= {"phone_number": "+44 20 7946 0000", "address": {"country": "GB"}}
    client, _, body = await exchange(harness, "openid", {**sent, "groups": ["admin"]})
    assert await released(harness, client, body) == {}


@pytest.mark.parametrize(
    ("narrowed", "expected"),
    [
        ("openid", set()),
        ("openid email", {"email", "email_verified"}),
        ("openid profile", {"name"}),
    ],
)
async def test_refresh_narrowing_narrows_the_id_token(
    harness: Harness, narrowed: str, expected: set[str]
) -> None:
    claims = {"name": "Ada Lovelace", "email": "ada@example.com", "email_verified": True}
    client, secret, first = await exchange(harness, "openid profile email offline_access", claims)
    assert await released(harness, client, first) == claims
    reply = await harness.token(
        client,
        secret,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope=narrowed,
    )
    assert reply.status == 200, reply.body
    assert reply.body["scope"] == narrowed
    assert await released(harness, client, reply.body) == {k: claims[k] for k in expected}
    # The family keeps its full scope: a refresh without `scope` releases everything again.
    again = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=reply.body["refresh_token"]
    )
    assert again.status == 200, again.body
    assert await released(harness, client, again.body) == claims
