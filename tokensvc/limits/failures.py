"""Failed-login limiting with fixed-window counters (NIST SP 800-63B §5.2.2, "Rate Limiting
(Throttling)": limit consecutive failed attempts per account, without locking it for good).

A check is a pair `(limit, subject)`: the username tried, the client address, … Each pair has
one counter. Its window opens with the first failure and lasts `limit.window` seconds; once
the counter holds `limit.max_failures` failures the subject is locked until the window ends,
then the counter is gone and the subject starts afresh. A login attempt asks `retry_after`
for all its pairs first and is refused while any is locked.

Memory for `tokensvc dev`, Redis in production (`TOKENSVC_REDIS_URL`).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokensvc.errors import StoreUnavailable
from tokensvc.expiring import ExpiringDict
from tokensvc.inprocess import InProcess
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, RedisStore, calls_by_slot, connect

STORE = "redis"
KEY_PREFIX = "tokensvc:fail:"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Limit:
    """At most `max_failures` failures per subject within `window` seconds. `name` tells the
    counters of different limits apart (it is part of the Redis key): one name, one limit."""

    name: str
    max_failures: int
    window: int  # seconds

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"limit name must match {_NAME.pattern}, got {self.name!r}")
        if not _positive_int(self.max_failures):
            raise ValueError(f"max_failures must be an integer >= 1, got {self.max_failures!r}")
        if not _positive_int(self.window):
            raise ValueError(f"window must be whole seconds >= 1, got {self.window!r}")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# Defaults: a username is locked after 5 failures in 5 minutes (guessing one account's
# password); an address after 20 (spraying many accounts from one place, while a shared
# NAT or proxy still gets some room).
PER_USERNAME = Limit("username", 5, 300)
PER_ADDRESS = Limit("address", 20, 300)

Check = tuple[Limit, str]


class FailureLimiter(Protocol):
    """Failure counters per `(limit, subject)`. Every method takes the whole list of checks
    of one login attempt and answers for all of them together, in one round trip.

    * `retry_after` is the whole seconds (rounded up) until every given subject may try
      again: 0 when none is locked, else the largest remaining lock, never more than the
      largest `limit.window` involved.
    * Counting is atomic: concurrent failures are all counted, and the window is opened by
      the first of them alone; later failures (locked or not) never extend it.
    * Subjects are personal data (usernames, addresses): backends outside the process keep
      only their SHA-256, never the subject itself.
    * Failures of the backing server raise `tokensvc.errors.StoreUnavailable`, nothing else.
      (Whether to let logins through while the limiter is down is the caller's decision.)
    """

    async def retry_after(self, checks: Sequence[Check]) -> int:
        """Seconds until every `(limit, subject)` allows another attempt; 0 = allowed now."""

    async def record_failure(self, checks: Sequence[Check]) -> int:
        """Count one failure for each pair, then answer as `retry_after` would."""

    async def clear(self, checks: Sequence[Check]) -> None:
        """Forget the pairs' failures (say the username's after a successful login)."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- memory


class MemoryFailureLimiter(InProcess):
    """In-process counters (one process only). Atomic because no method awaits.

    Bounded: a counter is dropped once its window is over, when next looked at, and by a
    sweep during `record_failure` once `sweep_interval` seconds have passed since the last
    sweep or the dict has doubled since then. So at most the counters of the last
    `sweep_interval` seconds plus the live ones are kept, however many subjects are tried.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, *, sweep_interval: float = 60.0
    ) -> None:
        self._clock = clock
        # (limit name, subject) -> (failures, window end)
        self._counters: ExpiringDict[tuple[str, str], tuple[int, float]] = ExpiringDict(
            lambda counter: counter[1], clock(), sweep_interval
        )

    async def retry_after(self, checks: Sequence[Check]) -> int:
        return self._retry_after(checks, self._clock())

    async def record_failure(self, checks: Sequence[Check]) -> int:
        now = self._clock()
        counters = self._counters.entries
        for limit, subject in checks:
            key = (limit.name, subject)
            counter = counters.get(key)
            if counter is None or counter[1] <= now:
                counters[key] = (1, now + limit.window)
            else:
                counters[key] = (counter[0] + 1, counter[1])
        self._counters.swept(now)
        return self._retry_after(checks, now)

    async def clear(self, checks: Sequence[Check]) -> None:
        for limit, subject in checks:
            self._counters.entries.pop((limit.name, subject), None)

    def _retry_after(self, checks: Sequence[Check], now: float) -> int:
        wait = 0.0
        counters = self._counters.entries
        for limit, subject in checks:
            key = (limit.name, subject)
            counter = counters.get(key)
            if counter is None:
                continue
            failures, ends = counter
            if ends <= now:
                del counters[key]
            elif failures >= limit.max_failures:
                wait = max(wait, ends - now)
        return math.ceil(wait)

    def __len__(self) -> int:
        return len(self._counters)


# --------------------------------------------------------------------------- redis

# KEYS: one counter per check. ARGV[1]: 1 to count a failure first, 0 to only look.
# ARGV[2k], ARGV[2k+1]: max_failures and window (ms) of KEYS[k]. Returns the longest
# remaining lock in milliseconds (0: none). PTTL rather than TTL: TTL rounds to the nearest
# second, so a lock in its last half second would read as 0 while still in force. A counter
# without an expiry (only a foreign write can make one) is given a fresh window, so no
# subject is ever locked for good.
_LIMIT = """
local count_it = ARGV[1] == '1'
local longest = 0
for i, key in ipairs(KEYS) do
    local max_failures = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    local failures
    if count_it then
        failures = redis.call('INCR', key)
        if failures == 1 then redis.call('PEXPIRE', key, window) end
    else
        failures = tonumber(redis.call('GET', key) or '0')
    end
    if failures >= max_failures then
        local left = redis.call('PTTL', key)
        if left == -1 then
            redis.call('PEXPIRE', key, window)
            left = window
        end
        if left > longest then longest = left end
    end
end
return longest
"""


def key_name(limit: Limit, subject: str) -> str:
    """The Redis key of one counter: the subject appears only as its SHA-256."""
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}{limit.name}:{digest}"


class RedisFailureLimiter(RedisStore):
    """Counters as Redis integers with a native expiry: one registered Lua script call per
    `retry_after` / `record_failure` (INCR, PEXPIRE on the first failure, PTTL), one `DEL`
    per `clear`. On a Redis Cluster, one call per hash slot of the keys checked."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self._script: Any = client.register_script(_LIMIT)

    @classmethod
    def from_url(cls, url: str) -> RedisFailureLimiter:
        return cls(connect(url))

    async def retry_after(self, checks: Sequence[Check]) -> int:
        return await self._run(checks, count=False)

    async def record_failure(self, checks: Sequence[Check]) -> int:
        return await self._run(checks, count=True)

    async def clear(self, checks: Sequence[Check]) -> None:
        if not checks:
            return
        try:
            await self._redis.delete(*(key_name(limit, subject) for limit, subject in checks))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc

    async def _run(self, checks: Sequence[Check], *, count: bool) -> int:
        if not checks:
            return 0
        keys = [key_name(limit, subject) for limit, subject in checks]

        async def run_slot(indexes: list[int]) -> int:
            args: list[int] = [1 if count else 0]
            for i in indexes:
                args += [checks[i][0].max_failures, checks[i][0].window * 1000]
            return int(await self._script(keys=[keys[i] for i in indexes], args=args))

        try:
            longest_ms = max(ms for _, ms in await calls_by_slot(self._redis, keys, run_slot))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc
        return math.ceil(longest_ms / 1000)
