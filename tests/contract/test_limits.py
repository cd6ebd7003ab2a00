"""The abuse limits' contracts (`tokensvc.limits`: `RateLimiter`, `Lockouts`), against memory
(an injected clock) and Redis (real time, short windows, the contract database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from tests.contract.backends import FakeClock
from tests.contract.conftest import redis_client
from tests.servers import free_port
from tokensvc.limits import buckets, lockout
from tokensvc.limits.buckets import MemoryBuckets, RateLimiter, RedisBuckets
from tokensvc.limits.lockout import Lockouts, MemoryLockouts, RedisLockouts

LOCK_SECONDS = 1.0  # short enough for Redis to be tested in real time


@dataclass
class Backend:
    name: str
    advance: Callable[[float], Awaitable[None]]
    make_rates: Callable[[], RateLimiter]
    make_lockouts: Callable[..., Lockouts]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        clock = FakeClock()
        return Backend(
            "memory",
            clock.advance,
            lambda: MemoryBuckets(clock),
            lambda **kw: MemoryLockouts(clock, **kw),
        )
    client = redis_client(request)
    return Backend(
        request.param,
        asyncio.sleep,
        lambda: RedisBuckets(client),
        lambda **kw: RedisLockouts(client, **kw),
    )


# --------------------------------------------------------------------------- rate limiter


async def test_a_bucket_admits_its_burst_then_says_how_long_to_wait(backend: Backend) -> None:
    rates = backend.make_rates()
    assert [await rates.take("a", 0.5, 4) for _ in range(4)] == [0.0] * 4
    wait = await rates.take("a", 0.5, 4)
    assert 1.5 < wait <= 2.0  # one token per 2 s; a few ms of real time may have passed
    assert await rates.take("b", 0.5, 4) == 0.0  # another client's bucket is its own


async def test_concurrent_takes_admit_exactly_the_tokens_held(backend: Backend) -> None:
    rates = backend.make_rates()
    waits = await asyncio.gather(*(rates.take("a", 0.1, 10) for _ in range(50)))
    assert sum(1 for w in waits if w == 0.0) == 10
    assert all(w > 0 for w in waits if w != 0.0)


async def test_a_bucket_refills_at_its_rate(backend: Backend) -> None:
    rates = backend.make_rates()
    assert [await rates.take("a", 4.0, 2) for _ in range(2)] == [0.0, 0.0]
    assert await rates.take("a", 4.0, 2) > 0
    await backend.advance(0.3)  # a little more than one token's 0.25 s
    assert await rates.take("a", 4.0, 2) == 0.0
    assert await rates.take("a", 4.0, 2) > 0


async def test_redis_buckets_are_one_expiring_integer_per_client(
    contract_redis: aioredis.Redis,
) -> None:
    rates = RedisBuckets(contract_redis)
    assert await rates.take("a", 2.0, 4) == 0.0
    (key,) = await contract_redis.keys(buckets.KEY_PREFIX + "*")
    assert key == (buckets.KEY_PREFIX + "a").encode()
    value = await contract_redis.get(key)
    assert value is not None and value.isdigit()  # microseconds, no exponent notation
    assert 0 < await contract_redis.pttl(key) <= 500  # full again after one token's time


async def test_replicas_share_one_bucket(contract_redis: aioredis.Redis) -> None:
    one, two = RedisBuckets(contract_redis), RedisBuckets(contract_redis)
    waits = [await (one if i % 2 else two).take("a", 0.1, 5) for i in range(12)]
    assert sum(1 for w in waits if w == 0.0) == 5


async def test_concurrent_takes_share_one_round_trip(contract_redis: aioredis.Redis) -> None:
    rates = RedisBuckets(contract_redis)
    await rates.take("warm", 1.0, 1)  # loads the script
    before = (await contract_redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    waits = await asyncio.gather(*(rates.take(f"c{i % 7}", 0.1, 2) for i in range(40)))
    after = (await contract_redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert after - before == 1
    assert sum(1 for w in waits if w == 0.0) == 7 * 2  # per key: its burst, in order


async def test_a_cancelled_take_leaves_the_others_answered(
    contract_redis: aioredis.Redis,
) -> None:
    rates = RedisBuckets(contract_redis)
    # The first take leads a batch and yields to the loop; the others join it; then the leader
    # is cancelled before it makes the call. The others are still answered, and the cancelled
    # request took nothing.
    leader = asyncio.ensure_future(rates.take("a", 0.1, 2))
    followers = [asyncio.ensure_future(rates.take("a", 0.1, 2)) for _ in range(3)]
    await asyncio.sleep(0)
    leader.cancel()
    waits = await asyncio.wait_for(asyncio.gather(*followers), 5)
    assert sorted(w == 0.0 for w in waits) == [False, True, True]
    with pytest.raises(asyncio.CancelledError):
        await leader

    # A follower cancelled while the call is under way: the others get their answers.
    rates = RedisBuckets(contract_redis)
    takes = [asyncio.ensure_future(rates.take("b", 0.1, 2)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    takes[1].cancel()
    done = await asyncio.wait_for(asyncio.gather(*takes, return_exceptions=True), 5)
    assert isinstance(done[1], asyncio.CancelledError)
    assert done[0] == 0.0 and done[2] > 0  # the cancelled one's token was taken in Redis


async def test_redis_down_admits() -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    rates = RedisBuckets(dead)
    try:
        assert await rates.take("a", 0.1, 1) == 0.0
        assert await rates.take("a", 0.1, 1) == 0.0  # within the back-off: Redis not asked
    finally:
        await dead.aclose()


# --------------------------------------------------------------------------- lockouts


async def test_max_failures_lock_one_client_id_and_no_other(backend: Backend) -> None:
    locks = backend.make_lockouts(max_failures=3, lockout=LOCK_SECONDS)
    assert await locks.record_failure("a") == 0
    assert await locks.record_failure("b") == 0
    assert await locks.record_failure("a") == 0
    assert locks.retry_after("a") == 0
    assert await locks.record_failure("a") == 1
    assert locks.retry_after("a") == 1
    assert locks.retry_after("b") == 0
    assert await locks.record_failure("a") == 1  # locked: not counted, not extended
    await backend.advance(LOCK_SECONDS + 0.05)
    assert locks.retry_after("a") == 0
    assert await locks.record_failure("a") == 0  # a fresh count


async def test_concurrent_failures_are_all_counted_once(backend: Backend) -> None:
    locks = backend.make_lockouts(max_failures=5, lockout=LOCK_SECONDS)
    results = await asyncio.gather(*(locks.record_failure("a") for _ in range(20)))
    assert sorted(results) == [0] * 4 + [1] * 16


async def test_failures_outside_the_window_do_not_add_up(backend: Backend) -> None:
    locks = backend.make_lockouts(max_failures=2, window=0.5, lockout=LOCK_SECONDS)
    assert await locks.record_failure("a") == 0
    await backend.advance(0.6)
    assert await locks.record_failure("a") == 0
    assert locks.retry_after("a") == 0


async def test_a_lock_reaches_other_replicas_at_their_next_sync(
    contract_redis: aioredis.Redis,
) -> None:
    one = RedisLockouts(contract_redis, max_failures=2, lockout=LOCK_SECONDS)
    two = RedisLockouts(contract_redis, max_failures=2, lockout=LOCK_SECONDS)
    await one.record_failure("a")
    assert await two.record_failure("a") == 1  # the failure that locks counted in Redis
    assert two.retry_after("a") == 1
    assert one.retry_after("a") == 0  # has not synced yet
    await one.sync()
    assert one.retry_after("a") == 1
    assert one.retry_after("b") == 0
    await asyncio.sleep(LOCK_SECONDS + 0.05)
    await one.sync()
    assert one.retry_after("a") == 0
    assert await contract_redis.exists(lockout.LOCKS_KEY) == 0  # gone with its last lock


async def test_the_sync_task_copies_locks_and_stops_on_close(
    contract_redis: aioredis.Redis,
) -> None:
    recorder = RedisLockouts(contract_redis, max_failures=1, lockout=5.0)
    watcher = RedisLockouts(contract_redis, sync_interval=0.02)
    await watcher.start()
    try:
        await recorder.record_failure("a")
        for _ in range(100):
            if watcher.retry_after("a"):
                break
            await asyncio.sleep(0.01)
        assert watcher.retry_after("a") == 5
        # Deleting the lock in Redis unlocks everywhere at the next sync.
        await contract_redis.zrem(lockout.LOCKS_KEY, "a")
        for _ in range(100):
            if not watcher.retry_after("a"):
                break
            await asyncio.sleep(0.01)
        assert watcher.retry_after("a") == 0
    finally:
        await watcher.close()
    await watcher.close()  # idempotent


async def test_redis_down_locks_nothing_and_raises_nothing() -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    locks = RedisLockouts(dead, max_failures=1)
    try:
        assert await locks.record_failure("a") == 0
        await locks.sync()
        assert locks.retry_after("a") == 0
    finally:
        await dead.aclose()
