"""Pushed authorization requests (RFC 9126) end to end, over memory and Redis + Postgres:
`POST /par` authenticates the client as `/token` does and validates as `/authorize` does; the
login front-end takes the pushed request once through the internal API; `--require-par`
clients are refused without it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness import Harness, Reply
from tests.integration.conftest import RealBackend, ServiceFactory
from tests.jose import dpop_proof, jwk_thumbprint, keypair
from tests.login_harness import Login
from tokensvc.http.par import PUSHED_TTL, REQUEST_URI_PREFIX
from tokensvc.models import Client
from tokensvc.opaque import lookup_hash
from tokensvc.registration import new_resource, new_user
from tokensvc.storage.ephemeral import RedisEphemeral

pytestmark = pytest.mark.asyncio
PASSWORD = "correct horse battery"
ORDERS = "https://orders.example.com"
OTHER = "https://other.example.com"
SCOPES = "openid profile email offline_access orders:read"


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    h: Harness = await make_harness()
    await h.stores.resources.add(new_resource(identifier=ORDERS, scopes=["orders:read"]))
    await h.stores.resources.add(new_resource(identifier=OTHER, scopes=["other:read"]))
    return h


@pytest.fixture
async def person(harness: Harness) -> None:
    assert await harness.stores.users.add(new_user(username="ada", password=PASSWORD))
    harness.remember(PASSWORD)


async def app(h: Harness, **kwargs: Any) -> tuple[Client, str]:
    client, secret = await h.client(scope_list=[SCOPES], resources=(ORDERS,), **kwargs)
    assert secret is not None
    return client, secret


async def push(
    h: Harness,
    login: Login,
    client: Client,
    secret: str | None,
    **changes: Any,
) -> Reply:
    """POST /par of `login.authorize_params(client, **changes)` (a list value repeats its
    parameter, None leaves one out), authenticated with client_secret_basic."""
    params = login.authorize_params(client, **changes)
    data = [
        (name, v)
        for name, value in params.items()
        if value is not None
        for v in (value if isinstance(value, list) else [value])
    ]
    basic = None if secret is None else (client.client_id, secret)
    reply = await h.post_token(data, basic=basic, path="/par")
    if reply.status == 201:
        h.remember(reply.body["request_uri"])
    return reply


async def pushed(h: Harness, login: Login, client: Client, secret: str, **changes: Any) -> str:
    reply = await push(h, login, client, secret, **changes)
    assert reply.status == 201, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.body["expires_in"] == PUSHED_TTL == 60
    request_uri: str = reply.body["request_uri"]
    assert request_uri.startswith(REQUEST_URI_PREFIX) and len(request_uri) > 70
    return request_uri


async def authorize_pushed(login: Login, client_id: str, request_uri: str, **more: str) -> Any:
    return await login.browser().get(
        "/authorize", client_id=client_id, request_uri=request_uri, **more
    )


def refused_page(page: Any) -> None:
    """An error page, never a redirect: the pushed request established no redirect URI."""
    assert page.status == 400 and "Location" not in page.headers, page.text
    assert "expired or was already used" in page.text


async def test_a_pushed_request_signs_in_and_its_code_carries_what_was_pushed(
    harness: Harness, login: Login, person: None
) -> None:
    client, secret = await app(harness)
    key = keypair()
    request_uri = await pushed(
        harness,
        login,
        client,
        secret,
        scope="openid orders:read",
        resource=ORDERS,
        dpop_jkt=jwk_thumbprint(key),
    )
    # RFC 9126 §4: what else the URL says is ignored; the pushed parameters hold.
    form = await authorize_pushed(
        login, client.client_id, request_uri, scope="openid email", state="other", nonce="x"
    )
    assert form.status == 200 and 'name="username"' in form.text
    browser = login.browsers[-1]
    done = await browser.sign_in(form, "ada", PASSWORD)
    assert done.status == 302, done.text
    assert done.location.startswith(client.redirect_uris[0] + "?")
    assert done.query["state"] == "st-123" and done.query["iss"] == harness.settings.issuer
    token_url = harness.settings.issuer + "/token"
    exchange = {
        "grant_type": "authorization_code",
        "code": done.query["code"],
        "redirect_uri": client.redirect_uris[0],
        "code_verifier": login.verifiers[-1],
    }
    reply = await harness.post_token(
        exchange, basic=(client.client_id, secret), headers={"DPoP": dpop_proof(key, token_url)}
    )
    assert reply.status == 200, reply.body
    assert reply.body["token_type"] == "DPoP" and reply.body["scope"] == "openid orders:read"
    access = await harness.verify(reply.body["access_token"], typ="at+jwt")
    assert access["aud"] == ORDERS and access["cnf"] == {"jkt": jwk_thumbprint(key)}
    await harness.verify(reply.body["id_token"], typ="JWT", nonce="nonce-456")


async def test_a_request_uri_is_used_once(harness: Harness, login: Login) -> None:
    client, secret = await app(harness)
    request_uri = await pushed(harness, login, client, secret)
    assert (await authorize_pushed(login, client.client_id, request_uri)).status == 200
    refused_page(await authorize_pushed(login, client.client_id, request_uri))


async def test_a_pushed_request_expires(
    harness: Harness, login: Login, real_backend: RealBackend | None
) -> None:
    client, secret = await app(harness)
    request_uri = await pushed(harness, login, client, secret)
    store = harness.raw.pushed if harness.raw is not None else None
    if real_backend is None:
        harness.clock.advance(PUSHED_TTL + 1)
    else:  # Redis keeps time itself: the TTL it was given, then a shortened one
        assert isinstance(store, RedisEphemeral)
        name = store.key_name(lookup_hash(request_uri))
        assert 0 < await real_backend.redis.ttl(name) <= PUSHED_TTL
        await real_backend.redis.pexpire(name, 1)
        await asyncio.sleep(0.05)
    refused_page(await authorize_pushed(login, client.client_id, request_uri))


async def test_another_clients_request_uri_is_refused_and_not_spent(
    harness: Harness, login: Login
) -> None:
    client, secret = await app(harness)
    other, _ = await app(harness, redirect_uris=client.redirect_uris)
    request_uri = await pushed(harness, login, client, secret)
    refused_page(await authorize_pushed(login, other.client_id, request_uri))
    taken = await harness.internal(
        "POST", "/internal/pushed", json={"client_id": other.client_id, "request_uri": request_uri}
    )
    assert taken.status == 400 and taken.body["error"] == "invalid_request_uri"
    assert (await authorize_pushed(login, client.client_id, request_uri)).status == 200


async def test_the_internal_api_hands_a_pushed_request_out_once_and_only_with_the_bearer(
    harness: Harness, login: Login
) -> None:
    client, secret = await app(harness)
    request_uri = await pushed(harness, login, client, secret, resource=ORDERS)
    body = {"client_id": client.client_id, "request_uri": request_uri}
    denied = await harness.internal("POST", "/internal/pushed", json=body, bearer="wrong")
    assert denied.status == 401
    taken = await harness.internal("POST", "/internal/pushed", json=body)
    assert taken.status == 200 and taken.headers["Cache-Control"] == "no-store"
    assert taken.body["client_id"] == client.client_id and taken.body["resources"] == [ORDERS]
    again = await harness.internal("POST", "/internal/pushed", json=body)
    assert again.status == 400 and again.body["error"] == "invalid_request_uri"
    for bad in ({}, {"client_id": client.client_id}, [1]):
        reply = await harness.internal("POST", "/internal/pushed", json=bad)
        assert reply.status == 400 and reply.body["error"] == "invalid_request", bad


async def test_par_authenticates_the_client_as_the_token_endpoint_does(
    harness: Harness, login: Login
) -> None:
    client, secret = await app(harness)
    anonymous = await push(harness, login, client, None)
    assert anonymous.status == 401 and anonymous.body["error"] == "invalid_client"
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = await push(harness, login, client, secret + "x")
    assert wrong.status == 401 and wrong.body["error"] == "invalid_client"
    other, _ = await app(harness)
    mixed = await push(harness, login, client, secret, client_id=other.client_id)
    assert mixed.status == 400 and mixed.body["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"redirect_uri": None}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"dpop_jkt": "not-a-thumbprint"}, "invalid_request"),
        ({"resource": OTHER}, "invalid_target"),
        ({"resource": [ORDERS, "orders"]}, "invalid_target"),
        ({"request": "eyJ..."}, "request_not_supported"),
        ({"request_uri": REQUEST_URI_PREFIX + "abc"}, "invalid_request"),  # RFC 9126 §2.1
    ],
)
async def test_what_authorize_refuses_par_refuses_as_json(
    harness: Harness, login: Login, change: dict[str, Any], error: str
) -> None:
    client, secret = await app(harness)
    reply = await push(harness, login, client, secret, **change)
    assert reply.status == 400 and reply.body["error"] == error, reply.body
    assert reply.body["error_description"]
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-store"


async def test_a_require_par_client_must_push(harness: Harness, login: Login, person: None) -> None:
    client, secret = await app(harness, require_par=True)
    direct = await login.browser().get("/authorize", **login.authorize_params(client))
    assert direct.status == 302 and direct.location.startswith(client.redirect_uris[0] + "?")
    assert direct.query["error"] == "invalid_request" and direct.query["state"] == "st-123"
    assert "PAR is required" in direct.query["error_description"]
    request_uri = await pushed(harness, login, client, secret)
    form = await authorize_pushed(login, client.client_id, request_uri)
    done = await login.browsers[-1].sign_in(form, "ada", PASSWORD)
    assert done.status == 302 and "code" in done.query, done.text
    reply = await harness.exchange(client, secret, done.query["code"], login.verifiers[-1])
    assert reply.status == 200, reply.body


async def test_discovery_names_the_endpoint(harness: Harness) -> None:
    metadata = (await harness.get("/.well-known/oauth-authorization-server")).body
    assert metadata["pushed_authorization_request_endpoint"] == harness.settings.issuer + "/par"
    assert metadata["require_pushed_authorization_requests"] is False
