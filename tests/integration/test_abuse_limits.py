"""Abuse limits at POST /token over real HTTP (`tokensvc.limits`): per-client rate limits and
invalid_client lockouts, over memory (injected clock) and Redis+Postgres (real time; the
Redis lockout lasts `REDIS_LOCK` seconds so that its end can be waited for)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.harness import Clock, Harness, Reply
from tests.integration.conftest import RealBackend
from tokensvc.limits.buckets import MemoryBuckets, RedisBuckets
from tokensvc.limits.lockout import LOCKOUT, MAX_FAILURES, MemoryLockouts, RedisLockouts
from tokensvc.models import Client
from tokensvc.wiring.stores import Stores

pytestmark = pytest.mark.asyncio

REDIS_LOCK = 1.0


@pytest.fixture
async def stores(
    stores: Stores, real_backend: RealBackend | None, clock: Clock
) -> AsyncIterator[Stores]:
    """The conftest's stores, with the limits on the same backend (as `open_stores` does)."""
    if real_backend is None:
        yield replace(stores, rates=MemoryBuckets(clock), lockouts=MemoryLockouts(clock))
        return
    lockouts = RedisLockouts(real_backend.redis, lockout=REDIS_LOCK)
    await lockouts.start()
    try:
        yield replace(stores, rates=RedisBuckets(real_backend.redis), lockouts=lockouts)
    finally:
        await lockouts.close()


def lock_seconds(backend: str) -> float:
    return LOCKOUT if backend == "memory" else REDIS_LOCK


async def later(harness: Harness, backend: str, seconds: float) -> None:
    """Let `seconds` pass for the limits: the injected clock in memory, real time in Redis."""
    if backend == "memory":
        harness.clock.advance(seconds)
    else:
        await asyncio.sleep(seconds)


async def machine(harness: Harness, **kwargs: object) -> tuple[Client, str]:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["api:read"], **kwargs
    )
    assert secret is not None
    return client, secret


async def cc(harness: Harness, client: Client, secret: str, **params: str) -> Reply:
    return await harness.token(client, secret, grant_type="client_credentials", **params)


def assert_slow_down(reply: Reply, *, at_most: int) -> int:
    assert reply.status == 429, reply.body
    assert reply.body["error"] == "slow_down"
    assert isinstance(reply.body["error_description"], str)
    assert reply.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in reply.headers
    retry_after = reply.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after  # whole seconds
    assert 1 <= int(retry_after) <= at_most
    return int(retry_after)


# --------------------------------------------------------------------------- rate limits


async def test_a_client_over_its_rate_gets_429_while_others_are_served(
    harness: Harness,
) -> None:
    limited, secret = await machine(harness, rate_limit=0.2, rate_burst=3)
    unlimited, unlimited_secret = await machine(harness)
    statuses = []
    for _ in range(5):
        statuses.append((await cc(harness, limited, secret)).status)
        assert (await cc(harness, unlimited, unlimited_secret)).status == 200
    assert statuses == [200, 200, 200, 429, 429]
    assert assert_slow_down(await cc(harness, limited, secret), at_most=5) >= 4

    # Another limited client has a bucket of its own.
    other, other_secret = await machine(harness, rate_limit=0.2, rate_burst=3)
    assert [(await cc(harness, other, other_secret)).status for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]


async def test_the_bucket_refills_at_the_clients_rate(harness: Harness, backend: str) -> None:
    client, secret = await machine(harness, rate_limit=2, rate_burst=2)
    assert [(await cc(harness, client, secret)).status for _ in range(3)] == [200, 200, 429]
    await later(harness, backend, 0.55)  # one token is 0.5 s
    assert (await cc(harness, client, secret)).status == 200
    assert assert_slow_down(await cc(harness, client, secret), at_most=1) == 1
    await later(harness, backend, 1.05)  # two tokens: the bucket is full, and holds no more
    assert [(await cc(harness, client, secret)).status for _ in range(3)] == [200, 200, 429]


async def test_unauthenticated_requests_do_not_spend_a_clients_requests(
    harness: Harness,
) -> None:
    client, secret = await machine(harness, rate_limit=0.2, rate_burst=3)
    for _ in range(MAX_FAILURES - 1):  # short of a lockout
        assert (await cc(harness, client, secret[::-1])).status == 401
    assert [(await cc(harness, client, secret)).status for _ in range(4)] == [200, 200, 200, 429]


async def test_every_authenticated_request_counts_whatever_its_outcome(
    harness: Harness,
) -> None:
    client, secret = await machine(harness, rate_limit=0.2, rate_burst=2)
    assert (await cc(harness, client, secret, scope="api:admin")).status == 400
    assert (
        await harness.token(client, secret, grant_type="refresh_token", refresh_token="x" * 43)
    ).status == 400
    assert_slow_down(await cc(harness, client, secret), at_most=5)


async def test_rejections_are_logged_with_client_and_reason(harness: Harness, log_sink) -> None:
    client, secret = await machine(harness, rate_limit=0.2, rate_burst=1)
    assert (await cc(harness, client, secret)).status == 200
    mark = log_sink.mark()
    assert (await cc(harness, client, secret)).status == 429
    (event,) = [e for e in log_sink.events(mark) if e.get("event") == "request"]
    assert event["status"] == 429
    assert event["error"] == "slow_down"
    assert event["client_id"] == client.client_id
    assert event["limit"] == "rate"


# --------------------------------------------------------------------------- lockouts


async def test_invalid_client_lockout_refuses_even_the_right_secret_and_no_other_client(
    harness: Harness, backend: str, log_sink
) -> None:
    locked, secret = await machine(harness)
    other, other_secret = await machine(harness)
    for _ in range(MAX_FAILURES):
        reply = await cc(harness, locked, "wrong-" + secret)
        assert reply.status == 401 and reply.body["error"] == "invalid_client"
    mark = log_sink.mark()
    seconds = int(lock_seconds(backend))
    assert assert_slow_down(await cc(harness, locked, secret), at_most=seconds) == seconds
    (event,) = [e for e in log_sink.events(mark) if e.get("event") == "request"]
    assert event["error"] == "slow_down"
    assert (event["client_id"], event["limit"]) == (locked.client_id, "lockout")

    # Other clients: served, and their own failures are still just 401s.
    assert (await cc(harness, other, other_secret)).status == 200
    assert (await cc(harness, other, "wrong-" + other_secret)).status == 401
    assert (await cc(harness, other, other_secret)).status == 200

    await later(harness, backend, lock_seconds(backend) + 0.05)
    assert (await cc(harness, locked, secret)).status == 200
    # The count started afresh: one more failure does not lock again.
    assert (await cc(harness, locked, "wrong-" + secret)).status == 401
    assert (await cc(harness, locked, secret)).status == 200


async def test_failures_of_every_kind_count_and_unknown_ids_never_lock(
    harness: Harness,
) -> None:
    client, secret = await machine(harness, auth_method="client_secret_post")
    for i in range(MAX_FAILURES):
        if i % 2:  # the wrong method: Basic for a client registered for client_secret_post
            reply = await harness.post_token(
                {"grant_type": "client_credentials"}, basic=(client.client_id, secret)
            )
        else:
            reply = await harness.post_token(
                {
                    "grant_type": "client_credentials",
                    "client_id": client.client_id,
                    "client_secret": "nope",
                }
            )
        assert reply.status == 401
    assert_slow_down(await cc(harness, client, secret), at_most=int(LOCKOUT))

    for _ in range(MAX_FAILURES + 5):
        reply = await harness.post_token(
            {
                "grant_type": "client_credentials",
                "client_id": "no-such-client",
                "client_secret": "x",
            }
        )
        assert reply.status == 401
