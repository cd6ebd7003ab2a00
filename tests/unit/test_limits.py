"""Abuse limits in memory (tokensvc.limits) and their registration, on a controlled clock."""

from __future__ import annotations

import math

import pytest

from tokensvc.errors import SlowDown
from tokensvc.http.responses import oauth_error
from tokensvc.limits.buckets import MemoryBuckets
from tokensvc.limits.lockout import LOCKOUT, MAX_FAILURES, WINDOW, MemoryLockouts
from tokensvc.registration import RegistrationError, check_rate_limit, new_client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- buckets


async def test_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    assert [await buckets.take("a", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await buckets.take("a", 2.0, 3)
    assert wait == pytest.approx(0.5)
    clock.now += 0.25
    assert await buckets.take("a", 2.0, 3) == pytest.approx(0.25)  # refusals take nothing
    clock.now += 0.25
    assert await buckets.take("a", 2.0, 3) == 0.0
    assert await buckets.take("a", 2.0, 3) == pytest.approx(0.5)
    clock.now += 10  # long idle: full again, but never holds more than the burst
    assert [await buckets.take("a", 2.0, 3) == 0.0 for _ in range(4)] == [True] * 3 + [False]


async def test_bucket_sustains_the_rate() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    admitted = 0
    for _ in range(1000):  # 10 s in steps of 10 ms, at 3 requests per second with burst 1
        if await buckets.take("a", 3.0, 1) == 0.0:
            admitted += 1
        clock.now += 0.01
    assert admitted == 30


async def test_fractional_rates_and_buckets_per_client() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    assert await buckets.take("slow", 0.1, 1) == 0.0
    assert await buckets.take("slow", 0.1, 1) == pytest.approx(10.0)
    assert await buckets.take("other", 0.1, 1) == 0.0  # its own bucket
    clock.now += 10
    assert await buckets.take("slow", 0.1, 1) == 0.0


# --------------------------------------------------------------------------- lockouts


async def test_lockout_after_max_failures_only_for_that_client() -> None:
    clock = Clock()
    locks = MemoryLockouts(clock)
    for _ in range(MAX_FAILURES - 1):
        assert await locks.record_failure("a") == 0
        await locks.record_failure("b")
    assert locks.retry_after("a") == 0
    assert await locks.record_failure("a") == math.ceil(LOCKOUT)
    assert locks.retry_after("a") == math.ceil(LOCKOUT)
    assert locks.retry_after("b") == 0  # nine failures of its own, not locked
    clock.now += LOCKOUT - 0.5
    assert locks.retry_after("a") == 1
    assert await locks.record_failure("a") == 1  # while locked: not counted, not extended
    clock.now += 0.5
    assert locks.retry_after("a") == 0
    assert await locks.record_failure("a") == 0  # counting starts afresh


async def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    locks = MemoryLockouts(clock)
    for _ in range(MAX_FAILURES - 1):
        await locks.record_failure("a")
    clock.now += WINDOW
    for _ in range(MAX_FAILURES - 1):
        assert await locks.record_failure("a") == 0
    assert locks.retry_after("a") == 0


def test_lockout_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_failures"):
        MemoryLockouts(max_failures=0)
    with pytest.raises(ValueError, match="positive"):
        MemoryLockouts(lockout=0)


def test_slow_down_is_429_with_whole_seconds_retry_after() -> None:
    for wait, header in ((0.001, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")):
        response = oauth_error(SlowDown(wait, limit="rate", client_id="c"))
        assert response.status == 429
        assert response.headers["Retry-After"] == header
        assert response.headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------- registration


def test_rate_limit_registration() -> None:
    assert check_rate_limit(None, None) == (None, None)
    assert check_rate_limit(5, None) == (5.0, 5)
    assert check_rate_limit(0.2, None) == (0.2, 1)
    assert check_rate_limit(2.5, 10) == (2.5, 10)
    client, _ = new_client(name="m", grant_types=["client_credentials"], rate_limit=50.0)
    assert (client.rate_limit, client.rate_burst) == (50.0, 50)
    unlimited, _ = new_client(name="m", grant_types=["client_credentials"])
    assert (unlimited.rate_limit, unlimited.rate_burst) == (None, None)


@pytest.mark.parametrize(
    ("rate", "burst", "mentions"),
    [
        (None, 5, "--rate-burst needs --rate-limit"),
        (0.0, None, "--rate-limit"),
        (-1.0, None, "--rate-limit"),
        (float("nan"), None, "--rate-limit"),
        (float("inf"), None, "--rate-limit"),
        (1e9, None, "--rate-limit"),
        (1.0, 0, "--rate-burst"),
        (1.0, 10**9, "--rate-burst"),
    ],
)
def test_bad_rate_limits(rate: float | None, burst: int | None, mentions: str) -> None:
    with pytest.raises(RegistrationError, match=mentions):
        new_client(name="m", grant_types=["client_credentials"], rate_limit=rate, rate_burst=burst)
