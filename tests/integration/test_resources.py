"""Resource indicators (RFC 8707) end to end, over memory and real Redis + Postgres: `aud`,
scope and lifetime of access tokens for registered resources, at /token for every grant and
at /internal/codes, and every refusal the SPEC names (`invalid_target`, `invalid_scope`),
never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.conftest import ServiceFactory
from tokensvc.models import Client
from tokensvc.registration import new_resource

ORDERS = "https://orders.example.com"
BILLING = "https://billing.example.com/api"
OTHER = "https://other.example.com"
SCOPES = "openid profile email offline_access api:read orders:read orders:write billing:read"


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    h: Harness = await make_harness()
    await h.stores.resources.add(
        new_resource(identifier=ORDERS, scopes=["orders:read", "orders:write"], name="Orders")
    )
    await h.stores.resources.add(
        new_resource(identifier=BILLING, scopes=["billing:read"], access_token_ttl=300)
    )
    await h.stores.resources.add(new_resource(identifier=OTHER, scopes=["other:read"]))
    return h


async def machine(h: Harness, resources: tuple[str, ...] = (ORDERS, BILLING)) -> Any:
    return await h.client(
        grant_types=["client_credentials"], scope_list=[SCOPES], resources=resources
    )


async def claims_of(h: Harness, reply: Any) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    return await h.verify(reply.body["access_token"], typ="at+jwt")


def form(**params: Any) -> list[tuple[str, str]]:
    """A form in which list values repeat their parameter."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        pairs += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    return pairs


async def cc(h: Harness, client: Client, secret: str | None, **params: Any) -> Any:
    assert secret is not None
    data = form(grant_type="client_credentials", **params)
    return await h.post_token(data, basic=(client.client_id, secret))


async def test_a_token_for_one_resource_names_it_and_holds_only_its_scopes(
    harness: Harness,
) -> None:
    client, secret = await machine(harness)
    reply = await cc(harness, client, secret, resource=ORDERS)
    claims = await claims_of(harness, reply)
    assert claims["aud"] == ORDERS
    assert claims["scope"] == reply.body["scope"] == "orders:read orders:write"
    assert reply.body["expires_in"] == harness.settings.access_token_ttl


async def test_several_resources_make_an_audience_list_and_the_shortest_lifetime(
    harness: Harness,
) -> None:
    client, secret = await machine(harness)
    reply = await cc(harness, client, secret, resource=[ORDERS, BILLING], scope="orders:read")
    claims = await claims_of(harness, reply)
    assert claims["aud"] == [ORDERS, BILLING]
    assert claims["scope"] == "orders:read"
    assert reply.body["expires_in"] == 300 == claims["exp"] - claims["iat"]


async def test_without_a_resource_the_token_is_for_the_issuer_without_resource_scopes(
    harness: Harness,
) -> None:
    client, secret = await machine(harness)
    claims = await claims_of(harness, await cc(harness, client, secret))
    assert claims["aud"] == harness.settings.issuer
    assert claims["scope"] == "api:read"
    refused = await cc(harness, client, secret, scope="orders:read")
    assert refused.status == 400 and refused.body["error"] == "invalid_scope"


async def test_a_client_without_resources_is_as_before(harness: Harness) -> None:
    client, secret = await machine(harness, resources=())
    claims = await claims_of(harness, await cc(harness, client, secret, scope="orders:read"))
    assert claims["aud"] == harness.settings.issuer and claims["scope"] == "orders:read"


@pytest.mark.parametrize(
    ("resource", "why"),
    [
        (OTHER, "may not"),  # registered, but not for this client
        ("https://unknown.example.com", "may not"),
        ("orders", "absolute URI"),
        (ORDERS + "#frag", "fragment"),
        ([ORDERS] * 11, "At most"),
    ],
)
async def test_a_resource_the_client_may_not_have_is_invalid_target(
    harness: Harness, resource: Any, why: str
) -> None:
    client, secret = await machine(harness)
    reply = await cc(harness, client, secret, resource=resource)
    assert reply.status == 400 and reply.body["error"] == "invalid_target", reply.body
    assert why in reply.body["error_description"]


async def test_a_scope_of_no_requested_resource_is_invalid_scope(harness: Harness) -> None:
    client, secret = await machine(harness)
    for scope in ("billing:read", "api:read", "orders:read billing:read"):
        reply = await cc(harness, client, secret, resource=ORDERS, scope=scope)
        assert reply.status == 400 and reply.body["error"] == "invalid_scope", scope


async def test_a_removed_resource_gets_no_new_tokens(harness: Harness) -> None:
    client, secret = await machine(harness)
    assert (await cc(harness, client, secret, resource=ORDERS)).status == 200
    assert await harness.stores.resources.remove(ORDERS)
    reply = await cc(harness, client, secret, resource=ORDERS)
    assert reply.status == 400 and reply.body["error"] == "invalid_target"


async def test_introspection_returns_the_audience(harness: Harness) -> None:
    client, secret = await machine(harness)
    token = (await cc(harness, client, secret, resource=[ORDERS, BILLING])).body["access_token"]
    assert secret is not None
    reply = await harness.post_token(
        {"token": token}, basic=(client.client_id, secret), path="/introspect"
    )
    assert reply.body["active"] is True and reply.body["aud"] == [ORDERS, BILLING]


# ---------------------------------------------------------------- codes and refresh tokens


async def web_client(h: Harness) -> tuple[Client, str | None]:
    return await h.client(scope_list=[SCOPES], resources=(ORDERS, BILLING))


async def code_for(h: Harness, client: Client, **fields: Any) -> tuple[str, str | None]:
    return await h.mint_code(client, **fields)


async def redeem(
    h: Harness, client: Client, secret: str | None, code: str, verifier: Any, **p: Any
):
    data = form(
        grant_type="authorization_code",
        code=code,
        redirect_uri=client.redirect_uris[0],
        code_verifier=verifier,
        **p,
    )
    assert secret is not None
    return await h.post_token(data, basic=(client.client_id, secret))


async def refresh(h: Harness, client: Client, secret: str | None, token: str, **p: Any):
    assert secret is not None
    data = form(grant_type="refresh_token", refresh_token=token, **p)
    return await h.post_token(data, basic=(client.client_id, secret))


async def test_a_code_carries_its_resources_and_the_exchange_may_narrow_them(
    harness: Harness,
) -> None:
    client, secret = await web_client(harness)
    scope = "openid orders:read billing:read"
    code, verifier = await code_for(harness, client, scope=scope, resource=[ORDERS, BILLING])
    reply = await redeem(harness, client, secret, code, verifier, resource=BILLING)
    claims = await claims_of(harness, reply)
    assert claims["aud"] == BILLING and claims["scope"] == "openid billing:read"
    assert reply.body["expires_in"] == 300 and "id_token" in reply.body
    # the refresh token keeps the whole grant: each refresh picks its resource
    rt = reply.body["refresh_token"]
    orders = await refresh(harness, client, secret, rt, resource=ORDERS)
    assert (await claims_of(harness, orders))["aud"] == ORDERS
    assert orders.body["scope"] == "openid orders:read"
    both = await refresh(harness, client, secret, orders.body["refresh_token"])
    claims = await claims_of(harness, both)
    assert claims["aud"] == [ORDERS, BILLING] and claims["scope"] == scope


async def test_a_code_or_refresh_cannot_widen_its_resources(harness: Harness) -> None:
    client, secret = await web_client(harness)
    code, verifier = await code_for(harness, client, scope="openid orders:read", resource=[ORDERS])
    widened = await redeem(harness, client, secret, code, verifier, resource=BILLING)
    assert widened.status == 400 and widened.body["error"] == "invalid_target"
    code, verifier = await code_for(harness, client, scope="openid orders:read", resource=[ORDERS])
    reply = await redeem(harness, client, secret, code, verifier)
    assert (await claims_of(harness, reply))["aud"] == ORDERS
    again = await refresh(harness, client, secret, reply.body["refresh_token"], resource=BILLING)
    assert again.status == 400 and again.body["error"] == "invalid_target"


async def test_a_refused_refresh_does_not_spend_the_token(harness: Harness) -> None:
    client, secret = await web_client(harness)
    code, verifier = await code_for(harness, client, scope="openid orders:read", resource=[ORDERS])
    rt = (await redeem(harness, client, secret, code, verifier)).body["refresh_token"]
    assert (await refresh(harness, client, secret, rt, resource=OTHER)).status == 400
    assert (await refresh(harness, client, secret, rt)).status == 200


async def test_internal_codes_check_resources_and_their_scopes(harness: Harness) -> None:
    client, _ = await web_client(harness)
    for fields, error in (
        ({"resource": [OTHER], "scope": "openid"}, "invalid_target"),
        ({"resource": ["not a uri"], "scope": "openid"}, "invalid_target"),
        ({"resource": ORDERS, "scope": "openid"}, "invalid_request"),  # not a list
        ({"resource": [ORDERS], "scope": "openid billing:read"}, "invalid_scope"),
        ({"scope": "openid orders:read"}, "invalid_scope"),  # a resource's scope, no resource
    ):
        reply = await harness.request_code(client, **fields)
        assert reply.status == 400 and reply.body["error"] == error, (fields, reply.body)


async def test_userinfo_refuses_a_token_for_another_resource(harness: Harness) -> None:
    client, secret = await web_client(harness)
    code, verifier = await code_for(harness, client, scope="openid orders:read", resource=[ORDERS])
    token = (await redeem(harness, client, secret, code, verifier)).body["access_token"]
    async with harness.http.get(
        harness.public_url + "/userinfo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 401
        assert "another resource" in resp.headers["WWW-Authenticate"]


async def test_the_password_grant_takes_resources_too(harness: Harness) -> None:
    from tokensvc.registration import new_user

    user = new_user(username="ada", password="correct horse battery staple")
    assert await harness.stores.users.add(user)
    client, secret = await harness.client(
        grant_types=["password"], scope_list=[SCOPES], resources=(ORDERS,)
    )
    assert secret is not None
    data = form(
        grant_type="password",
        username="ada",
        password="correct horse battery staple",
        scope="openid orders:read",
        resource=ORDERS,
    )
    reply = await harness.post_token(data, basic=(client.client_id, secret))
    claims = await claims_of(harness, reply)
    assert claims["aud"] == ORDERS and claims["scope"] == "openid orders:read"


# ---------------------------------------------------------------- the login front-end


async def test_authorize_passes_resources_and_consent_names_the_apis(
    harness: Harness, login: Any
) -> None:
    from tokensvc.registration import new_user

    assert await harness.stores.users.add(new_user(username="ada", password="correct horse"))
    client, secret = await harness.client(
        scope_list=[SCOPES], resources=(ORDERS, BILLING, OTHER), require_consent=True
    )
    scope = "openid orders:read billing:read"
    browser, form = await login.authorize(client, scope=scope, resource=[ORDERS, BILLING])
    consent = await browser.sign_in(form, "ada", "correct horse")
    assert consent.status == 200 and 'action="/consent"' in consent.text
    assert f"Orders ({ORDERS})" in consent.text and BILLING in consent.text
    allowed = await browser.post("/consent", {**consent.fields, "decision": "allow"})
    assert allowed.status == 302, allowed.text
    reply = await redeem(harness, client, secret, allowed.query["code"], login.verifiers[-1])
    claims = await claims_of(harness, reply)
    assert claims["aud"] == [ORDERS, BILLING] and claims["scope"] == scope
    # the consent remembered covers these resources and scopes, and any part of them
    again = await browser.get(
        "/authorize", **login.authorize_params(client, scope=scope, resource=[ORDERS, BILLING])
    )
    assert again.status == 302 and "code" in again.query
    narrower = await browser.get(
        "/authorize", **login.authorize_params(client, scope="openid orders:read", resource=ORDERS)
    )
    assert narrower.status == 302 and "code" in narrower.query
    another = await browser.get(
        "/authorize", **login.authorize_params(client, scope="openid", resource=OTHER)
    )
    assert another.status == 200 and 'action="/consent"' in another.text  # a new API asks


async def test_authorize_refuses_a_resource_the_client_may_not_have(
    harness: Harness, login: Any
) -> None:
    client, _ = await harness.client(scope_list=[SCOPES], resources=(ORDERS,))
    browser = login.browser()
    for resource in (OTHER, "relative/path", ORDERS + "#x"):
        page = await browser.get("/authorize", **login.authorize_params(client, resource=resource))
        assert page.status == 302 and page.query["error"] == "invalid_target", resource
        assert page.query["state"] == "st-123"
