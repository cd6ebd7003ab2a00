"""DenyList contract (revoked access tokens by `jti`, RFC 7009 §2): memory, Redis, a Redis
Cluster. See `tokensvc.storage.protocols.DenyList` for the invariants."""

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
from tokensvc.redis_client import connect
from tokensvc.storage.denylist import MemoryDenyList, RedisDenyList
from tokensvc.storage.protocols import DenyList


@dataclass
class Backend:
    name: str
    store: DenyList
    now: Callable[[], float]  # the clock the store's expiry follows
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def denylist(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        clock = FakeClock(time.time())
        return Backend("memory", MemoryDenyList(clock), clock, clock.advance)
    return Backend(request.param, RedisDenyList(redis_client(request)), time.time, asyncio.sleep)


async def test_an_added_jti_is_refused_and_others_are_not(denylist: Backend) -> None:
    await denylist.store.add("jti-1", denylist.now() + 60)
    assert await denylist.store.contains("jti-1") is True
    assert await denylist.store.contains("jti-2") is False
    assert await denylist.store.contains("") is False


async def test_an_entry_lives_until_the_token_would_have_expired(denylist: Backend) -> None:
    await denylist.store.add("short", denylist.now() + 1)
    await denylist.store.add("long", denylist.now() + 60)
    assert await denylist.store.contains("short") is True
    await denylist.advance(2.2)  # past `until`, and past Redis's whole-second expiry
    assert await denylist.store.contains("short") is False
    assert await denylist.store.contains("long") is True


async def test_a_token_already_expired_is_not_stored(denylist: Backend) -> None:
    await denylist.store.add("gone", denylist.now() - 1)
    assert await denylist.store.contains("gone") is False


async def test_adding_again_is_harmless(denylist: Backend) -> None:
    until = denylist.now() + 60
    await denylist.store.add("twice", until)
    await denylist.store.add("twice", until)
    assert await denylist.store.contains("twice") is True


async def test_many_concurrent_revocations_all_hold(denylist: Backend) -> None:
    until = denylist.now() + 60
    jtis = [f"jti-{i}" for i in range(50)]
    await asyncio.gather(*(denylist.store.add(j, until) for j in jtis))
    assert await asyncio.gather(*(denylist.store.contains(j) for j in jtis)) == [True] * 50


async def test_lookups_made_together_each_get_their_own_answer(denylist: Backend) -> None:
    # One turn of the event loop: one MGET on Redis, answered key by key.
    await denylist.store.add("in-1", denylist.now() + 60)
    await denylist.store.add("in-2", denylist.now() + 60)
    asked = ["in-1", "out-1", "in-2", "out-2", "in-1"]
    answers = await asyncio.gather(*(denylist.store.contains(j) for j in asked))
    assert answers == [True, False, True, False, True]


async def test_a_revocation_on_one_replica_holds_on_another(shared_url: str) -> None:
    """Two replicas, each with its own connection: what one revokes the other refuses."""
    one, two = connect(shared_url), connect(shared_url)
    try:
        await RedisDenyList(one).add("shared", time.time() + 60)
        assert await RedisDenyList(two).contains("shared") is True
        assert await RedisDenyList(two).contains("other") is False
    finally:
        await one.aclose()
        await two.aclose()


async def test_an_unreachable_redis_is_store_unavailable() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    store = RedisDenyList(client)
    try:
        await assert_unavailable("redis", lambda: store.add("j", time.time() + 60))
        await assert_unavailable("redis", lambda: store.contains("j"))
    finally:
        await client.aclose()
