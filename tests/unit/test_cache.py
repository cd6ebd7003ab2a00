"""`storage.cache.Cached`: concurrent readers of an expired entry share one read, failures
reach every one of them, and `peek` answers from memory only; and `grants.target.resolve`
reuses a Target only while the cache serves the very records it was built from."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.harness import Clock as HarnessClock
from tests.harness import make_service
from tokensvc.errors import InvalidTarget, StoreUnavailable
from tokensvc.grants.target import resolve
from tokensvc.models import Resource
from tokensvc.registration import new_client, new_resource
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.storage.cache import CachedResources
from tokensvc.storage.memory import MemoryResources
from tokensvc.wiring.stores import memory_stores

API = "https://api.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowResources(MemoryResources):
    """Counts reads, and makes each take a turn of the loop (or fail when told to)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.fail = False

    async def get(self, identifier: str) -> Resource | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise StoreUnavailable("postgres", OSError("down"))
        return await super().get(identifier)


async def test_readers_of_an_expired_entry_share_one_read() -> None:
    inner, clock = SlowResources(), Clock()
    await inner.add(new_resource(identifier=API, scopes=["api:read"]))
    cache = CachedResources(inner, 30, clock=clock)
    assert cache.peek(API) == (False, None)
    results = await asyncio.gather(*(cache.get(API) for _ in range(32)))
    assert inner.reads == 1 and all(r is results[0] for r in results)
    assert cache.peek(API) == (True, results[0])
    clock.now += 31
    assert cache.peek(API) == (False, None)
    await asyncio.gather(*(cache.get(API) for _ in range(32)))
    assert inner.reads == 2


async def test_a_failed_read_fails_every_reader_and_the_next_read_tries_again() -> None:
    inner = SlowResources()
    await inner.add(new_resource(identifier=API, scopes=["api:read"]))
    cache = CachedResources(inner, 30, clock=Clock())
    inner.fail = True
    outcomes = await asyncio.gather(*(cache.get(API) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes) and inner.reads == 1
    inner.fail = False
    assert (await cache.get(API)) is not None and inner.reads == 2


async def test_a_cancelled_reader_does_not_strand_the_others() -> None:
    inner = SlowResources()
    await inner.add(new_resource(identifier=API, scopes=["api:read"]))
    cache = CachedResources(inner, 30, clock=Clock())
    first = asyncio.ensure_future(cache.get(API))
    await asyncio.sleep(0)  # the first read is under way
    second = asyncio.ensure_future(cache.get(API))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second) is not None


async def test_resolve_reuses_a_target_only_while_its_records_are_served() -> None:
    clock = Clock()
    memory = memory_stores()
    cache = CachedResources(memory.resources, 30, clock=clock)
    stores = dataclasses.replace(memory, resources=cache)
    svc = make_service(stores, keyset_from_jwks(generate_jwks("ES256")), HarnessClock(clock.now))
    client, _ = new_client(
        name="c", grant_types=["client_credentials"], scope_list=["api:read"], resources=[API]
    )
    await cache.add(new_resource(identifier=API, scopes=["api:read"]))
    first = await resolve(svc, client, (API,))
    assert (await resolve(svc, client, (API,))) is first
    await cache.remove(API)
    await cache.add(new_resource(identifier=API, scopes=["api:write"], access_token_ttl=60))
    changed = await resolve(svc, client, (API,))
    assert changed is not first and changed.lifetime(3600) == 60
    await cache.remove(API)
    with pytest.raises(InvalidTarget):
        await resolve(svc, client, (API,))
