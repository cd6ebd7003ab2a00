"""The opt-in machine-token cache (`client add --reuse-access-token`, tokensvc.machinetokens)
over memory and real Redis + Postgres, its clients behind the in-process cache as `tokensvc
serve` wires them: the token last issued for the same client, scope and audience comes back
while half its lifetime is left, with the time it has left; never for another scope or
resource, a DPoP-bound request, a changed client, a rotated key or a revoked token; never for
a client that did not opt in; and a revocation reaches a second replica through the change
feed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness import Clock, Harness, make_service, start
from tests.integration.conftest import RealBackend, ServiceFactory
from tests.jose import dpop_proof, keypair
from tokensvc.models import Client
from tokensvc.registration import new_resource
from tokensvc.service import Stores
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import KeySet, keyset_from_jwks
from tokensvc.storage.cache import CachedClients
from tokensvc.storage.changes import CLIENT, ChangeHub
from tokensvc.storage.postgres.changes import PostgresChangeFeed

TTL = 600
API = "https://api.example.com"
WITHIN = 1.0  # seconds: SPEC's bound for a change on every replica


@pytest.fixture
def stores(stores: Stores, real_backend: RealBackend | None) -> Stores:
    """The conftest's, with Postgres clients behind the in-process cache (`open_stores`)."""
    if real_backend is None:
        return stores
    return dataclasses.replace(stores, clients=CachedClients(real_backend.pg.clients, 300.0))


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    h: Harness = await make_harness(access_token_ttl=TTL)
    await h.stores.resources.add(new_resource(identifier=API, scopes=["api:write"]))
    return h


async def machine(h: Harness, reuse: bool = True) -> tuple[Client, str]:
    client, secret = await h.client(
        grant_types=["client_credentials"],
        scope_list=["api:read api:write"],
        resources=(API,),
        reuse_access_token=reuse,
    )
    assert secret is not None
    return client, secret


async def cc(h: Harness, client: Client, secret: str, **params: str) -> dict[str, Any]:
    headers = {"DPoP": params.pop("dpop")} if "dpop" in params else {}
    reply = await h.post_token(
        {"grant_type": "client_credentials", **params},
        basic=(client.client_id, secret),
        headers=headers,
    )
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


async def test_the_token_comes_back_while_half_its_life_is_left(
    harness: Harness, clock: Clock
) -> None:
    client, secret = await machine(harness)
    first = await cc(harness, client, secret, scope="api:read")
    assert first["expires_in"] == TTL
    clock.advance(100)
    again = await cc(harness, client, secret, scope="api:read")
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == TTL - 100  # what is left of it
    assert again["scope"] == "api:read" and again["token_type"] == "Bearer"
    claims = await harness.verify(again["access_token"], typ="at+jwt")
    assert claims["exp"] - int(clock()) == again["expires_in"]
    clock.advance(TTL // 2 - 100)  # exactly half left: still reused
    assert (await cc(harness, client, secret, scope="api:read"))["access_token"] == first[
        "access_token"
    ]
    clock.advance(1)  # less than half left: a fresh token, and that one is reused next
    fresh = await cc(harness, client, secret, scope="api:read")
    assert fresh["access_token"] != first["access_token"] and fresh["expires_in"] == TTL
    assert (await cc(harness, client, secret, scope="api:read"))["access_token"] == fresh[
        "access_token"
    ]


async def test_another_scope_resource_or_client_never_gets_it(harness: Harness) -> None:
    client, secret = await machine(harness)
    other, other_secret = await machine(harness)
    read = await cc(harness, client, secret, scope="api:read")
    for_api = await cc(harness, client, secret, resource=API)
    theirs = await cc(harness, other, other_secret, scope="api:read")
    assert read["scope"] == theirs["scope"] == "api:read" and for_api["scope"] == "api:write"
    assert len({t["access_token"] for t in (read, for_api, theirs)}) == 3
    # the key is the scope issued: asking for nothing issues api:read here (api:write is
    # the API's), so that request is the same as asking for api:read
    unasked = await cc(harness, client, secret)
    assert unasked["scope"] == "api:read" and unasked["access_token"] == read["access_token"]
    assert (await harness.verify(for_api["access_token"], typ="at+jwt"))["aud"] == API
    assert (await cc(harness, client, secret, resource=API))["access_token"] == for_api[
        "access_token"
    ]


async def test_off_by_default_every_request_gets_a_fresh_token(harness: Harness) -> None:
    client, secret = await machine(harness, reuse=False)
    tokens = {(await cc(harness, client, secret))["access_token"] for _ in range(3)}
    assert len(tokens) == 3


async def test_a_dpop_bound_request_never_reuses(harness: Harness) -> None:
    client, secret = await machine(harness)
    bearer = await cc(harness, client, secret)
    url = harness.settings.issuer + "/token"
    key = keypair()
    bound = [await cc(harness, client, secret, dpop=dpop_proof(key, url)) for _ in range(2)]
    assert {b["token_type"] for b in bound} == {"DPoP"}
    assert len({bearer["access_token"], *(b["access_token"] for b in bound)}) == 3
    assert (await cc(harness, client, secret))["access_token"] == bearer["access_token"]


async def test_a_changed_client_or_a_new_signing_key_gets_a_fresh_token(
    harness: Harness,
) -> None:
    client, secret = await machine(harness)
    first = await cc(harness, client, secret, scope="api:read")
    renamed = dataclasses.replace(client, name="Renamed")
    assert await harness.svc.stores.clients.replace(renamed)
    second = await cc(harness, client, secret, scope="api:read")
    assert second["access_token"] != first["access_token"]
    harness.svc.use_keys(keyset_from_jwks(generate_jwks("ES256")))
    third = await cc(harness, client, secret, scope="api:read")
    assert third["access_token"] != second["access_token"]
    assert (await cc(harness, client, secret, scope="api:read"))["access_token"] == third[
        "access_token"
    ]


async def test_a_revoked_token_is_never_handed_out_again(harness: Harness) -> None:
    client, secret = await machine(harness)
    first = await cc(harness, client, secret)
    reply = await harness.post_token(
        {"token": first["access_token"]}, basic=(client.client_id, secret), path="/revoke"
    )
    assert reply.status == 200
    second = await cc(harness, client, secret)
    assert second["access_token"] != first["access_token"]
    assert (await cc(harness, client, secret))["access_token"] == second["access_token"]


@pytest.fixture
async def second_replica(
    stores: Stores,
    real_backend: RealBackend | None,
    module_database: str,
    es256_keys: KeySet,
    clock: Clock,
    harness: Harness,
) -> AsyncIterator[Harness]:
    """Another token-service process on the same databases: its own client cache, kept
    current by its own change feed, as every replica's is."""
    assert real_backend is not None
    hub = ChangeHub()
    clients = CachedClients(real_backend.pg.clients, 300.0)
    hub.watch(CLIENT, clients)
    feed = PostgresChangeFeed(module_database, hub)
    feed.start()
    deadline = time.monotonic() + 10
    while not hub.connected:
        assert time.monotonic() < deadline, "the change feed did not connect"
        await asyncio.sleep(0.02)
    replica_stores = dataclasses.replace(stores, clients=clients)
    svc = make_service(replica_stores, es256_keys, clock, access_token_ttl=TTL)
    runners, public_url, internal_url = await start(svc)
    try:
        yield Harness(svc, public_url, internal_url, harness.http, raw=stores)
    finally:
        for runner in runners:
            await runner.cleanup()
        await feed.close()


@pytest.mark.parametrize("backend", ["real"])
async def test_a_revocation_reaches_the_other_replicas_cache(
    harness: Harness, second_replica: Harness
) -> None:
    client, secret = await machine(harness)
    # replica B holds a token for reuse; the client's registration may reach B's change feed
    # after B issued its first token, which then (rightly) is not reused: take the next one
    held = await cc(second_replica, client, secret)
    deadline = time.monotonic() + 2 * WITHIN
    while (again := await cc(second_replica, client, secret))["access_token"] != held[
        "access_token"
    ]:
        assert time.monotonic() < deadline, "replica B never reuses a token"
        held = again
    reply = await harness.post_token(
        {"token": held["access_token"]}, basic=(client.client_id, secret), path="/revoke"
    )
    assert reply.status == 200  # revoked at replica A
    deadline = time.monotonic() + WITHIN
    while (await cc(second_replica, client, secret))["access_token"] == held["access_token"]:
        assert time.monotonic() < deadline, "replica B still hands out the revoked token"
        await asyncio.sleep(0.02)
