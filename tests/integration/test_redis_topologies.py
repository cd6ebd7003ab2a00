"""The token service on a 3-master Redis Cluster and behind Sentinel, wired exactly as
production wires it (`open_stores` from a `TOKENSVC_REDIS_URL`), over real HTTP.

On the cluster every Redis-backed guarantee must hold although keys land on three servers:
one winner per code however its exchanges race, rate limits, client lockouts shared between
replicas, revocation. Behind Sentinel the service must follow a failover by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from redis.crc import key_slot

from tests.harness import Clock, Harness, make_service, start
from tests.redis_topologies import SentinelServers
from tokensvc.config import Settings
from tokensvc.limits.lockout import FAILURES_PREFIX, LOCKS_KEY
from tokensvc.signing.keys import KeySet
from tokensvc.wiring.stores import open_stores

RACERS = 5  # concurrent exchanges of each code
CODES = 40  # codes raced at once: their keys spread over the three masters
RECOVERY = 5.0  # seconds from a promoted master to a served exchange

ServiceFactory = Callable[..., Any]


@pytest.fixture
async def on_redis(
    module_database: str, es256_keys: KeySet, log_sink: Any
) -> AsyncIterator[ServiceFactory]:
    """Start token services on the Redis `url` names (and the module's Postgres); checks the
    logs for leaks at the end."""
    mark = log_sink.mark()
    harnesses: list[Harness] = []
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def factory(url: str, **settings: Any) -> Harness:
            config = Settings(
                issuer="http://127.0.0.1:8080", redis_url=url, database_url=module_database
            )
            stores = await stack.enter_async_context(open_stores(config))
            svc = make_service(stores, es256_keys, Clock(time.time()), **settings)
            runners, public_url, internal_url = await start(svc)
            for runner in runners:
                stack.push_async_callback(runner.cleanup)
            harness = Harness(svc, public_url, internal_url, http)
            harness.remember("internal-test-token-0123456789")
            harnesses.append(harness)
            return harness

        yield factory
    log_sink.assert_clean(mark, set().union(*(h.secrets for h in harnesses)))


async def race_codes(harness: Harness) -> None:
    """CODES codes, each exchanged by RACERS concurrent requests: exactly one 200 each."""
    client, secret = await harness.client()
    minted = [await harness.mint_code(client) for _ in range(CODES)]
    replies = await asyncio.gather(
        *(
            harness.exchange(client, secret, code, verifier)
            for code, verifier in minted
            for _ in range(RACERS)
        )
    )
    for i in range(CODES):
        mine = replies[i * RACERS : (i + 1) * RACERS]
        assert sorted(r.status for r in mine) == [200] + [400] * (RACERS - 1), [
            r.body for r in mine
        ]
        assert all(r.body["error"] == "invalid_grant" for r in mine if r.status == 400)


# --------------------------------------------------------------------------- cluster


def test_lockout_keys_share_one_slot_and_codes_spread() -> None:
    """The one multi-key script (a failure updates its counter and the locks) stays in one
    slot; codes are one key each, so they spread over the masters."""
    assert key_slot((FAILURES_PREFIX + "any-client").encode()) == key_slot(LOCKS_KEY.encode())


async def test_every_code_has_one_winner_on_a_cluster(
    on_redis: ServiceFactory, redis_cluster: Any
) -> None:
    harness = await on_redis(redis_cluster.url)
    await race_codes(harness)


async def test_rate_limits_and_revocation_work_on_a_cluster(
    on_redis: ServiceFactory, redis_cluster: Any
) -> None:
    harness = await on_redis(redis_cluster.url)
    limited, limited_secret = await harness.client(rate_limit=1.0, rate_burst=3)
    replies = [
        await harness.token(limited, limited_secret, grant_type="client_credentials")
        for _ in range(5)
    ]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    assert replies[-1].body["error"] == "slow_down"

    client, secret = await harness.client()
    access = (await harness.token(client, secret, grant_type="client_credentials")).body
    revoked = await harness.post_token_like("/revoke", client, secret, token=access["access_token"])
    assert revoked.status == 200
    seen = await harness.post_token_like(
        "/introspect", client, secret, token=access["access_token"]
    )
    assert seen.body == {"active": False}


async def test_lockouts_are_shared_between_replicas_on_a_cluster(
    on_redis: ServiceFactory, redis_cluster: Any
) -> None:
    one = await on_redis(redis_cluster.url)
    two = await on_redis(redis_cluster.url)
    client, secret = await one.client()
    for _ in range(10):  # limits.lockout.MAX_FAILURES wrong secrets at replica one
        wrong = await one.token(client, "not-the-secret", grant_type="client_credentials")
        assert wrong.status in (401, 429)
    deadline = time.monotonic() + 5
    while True:  # replica two copies the locks from Redis every 0.25 s
        reply = await two.token(client, secret, grant_type="client_credentials")
        if reply.status == 429 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert reply.status == 429, reply.body
    assert reply.body["error"] == "slow_down"


# --------------------------------------------------------------------------- sentinel


async def test_every_code_has_one_winner_behind_sentinel(
    on_redis: ServiceFactory, redis_sentinel: SentinelServers
) -> None:
    harness = await on_redis(redis_sentinel.url(db=2))
    await race_codes(harness)


async def test_the_service_follows_a_sentinel_failover(on_redis: ServiceFactory) -> None:
    with SentinelServers() as servers:
        harness = await on_redis(servers.url())
        client, secret = await harness.client()
        code, verifier = await harness.mint_code(client)
        assert (await harness.exchange(client, secret, code, verifier)).status == 200

        await asyncio.to_thread(servers.fail_over)
        promoted = time.monotonic()
        statuses: list[int] = []
        while True:
            reply = await harness.request_code(
                client,
                sub="user-123",
                auth_time=int(time.time()) - 5,
                code_challenge="x" * 43,
                code_challenge_method="S256",
            )
            statuses.append(reply.status)
            if reply.status == 201 or time.monotonic() - promoted > RECOVERY:
                break
            await asyncio.sleep(0.1)
        assert reply.status == 201, statuses
        assert set(statuses) <= {201, 503}, statuses  # the outage is a 503, never a 500
        code, verifier = await harness.mint_code(client)
        assert (await harness.exchange(client, secret, code, verifier)).status == 200
