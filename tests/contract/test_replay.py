"""ReplayStore contract (values accepted once: RFC 7523 §3 `jti`): memory, Redis, a Redis
Cluster. See `tokensvc.storage.protocols.ReplayStore` for the invariants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.contract.backends import FakeClock
from tests.contract.conftest import redis_client
from tests.contract.unreachable import assert_unavailable
from tests.servers import free_port
from tokensvc.opaque import lookup_hash
from tokensvc.redis_client import connect
from tokensvc.storage.protocols import ReplayStore
from tokensvc.storage.replay import MemoryReplay, RedisReplay


@dataclass
class Backend:
    name: str
    store: ReplayStore
    now: Callable[[], float]  # the clock the store's expiry follows
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def replay(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        clock = FakeClock(time.time())
        return Backend("memory", MemoryReplay(clock), clock, clock.advance)
    return Backend(request.param, RedisReplay(redis_client(request)), time.time, asyncio.sleep)


async def test_a_value_is_accepted_once(replay: Backend) -> None:
    until = replay.now() + 60
    assert await replay.store.first_use(lookup_hash("jti-1"), until) is True
    assert await replay.store.first_use(lookup_hash("jti-1"), until) is False
    assert await replay.store.first_use(lookup_hash("jti-1"), until + 600) is False
    assert await replay.store.first_use(lookup_hash("jti-2"), until) is True


async def test_of_fifty_racing_uses_exactly_one_is_first(replay: Backend) -> None:
    key, until = lookup_hash("raced"), replay.now() + 60
    won = await asyncio.gather(*(replay.store.first_use(key, until) for _ in range(50)))
    assert won.count(True) == 1


async def test_values_checked_together_keep_their_own_answers_and_expiries(
    replay: Backend,
) -> None:
    # In one turn of the event loop: one script call on Redis, each key with its own expiry.
    used, short, long = lookup_hash("used"), lookup_hash("short-1"), lookup_hash("long-1")
    assert await replay.store.first_use(used, replay.now() + 60) is True
    now = replay.now()
    answers = await asyncio.gather(
        replay.store.first_use(short, now + 1),
        replay.store.first_use(used, now + 60),
        replay.store.first_use(long, now + 60),
        replay.store.first_use(short, now + 1),
    )
    assert answers == [True, False, True, False]
    await replay.advance(2.2)
    assert await replay.store.first_use(short, replay.now() + 1) is True
    assert await replay.store.first_use(long, replay.now() + 60) is False


async def test_a_value_is_remembered_until_it_expires(replay: Backend) -> None:
    key = lookup_hash("short")
    assert await replay.store.first_use(key, replay.now() + 1) is True
    assert await replay.store.first_use(key, replay.now() + 1) is False
    await replay.advance(2.2)  # past `until` and Redis's whole-second expiry
    assert await replay.store.first_use(key, replay.now() + 1) is True


async def test_two_replicas_accept_a_value_once_between_them(shared_url: str) -> None:
    one, two = connect(shared_url), connect(shared_url)
    try:
        # Connected first, as replicas are by their readiness checks: redis-py's cluster client
        # can fail a handshake when twenty commands open its first connections at once.
        await asyncio.gather(one.ping(), two.ping())
        key, until = lookup_hash("shared"), time.time() + 60
        won = await asyncio.gather(
            *(RedisReplay(c).first_use(key, until) for c in (one, two) for _ in range(10))
        )
        assert won.count(True) == 1
    finally:
        await one.aclose()
        await two.aclose()


async def test_an_unreachable_redis_is_store_unavailable() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        store = RedisReplay(client)
        await assert_unavailable("redis", lambda: store.first_use(b"k", time.time() + 60))
    finally:
        await client.aclose()
