"""Lockouts after failed client authentication, per client_id.

`MAX_FAILURES` `invalid_client` failures of one registered client_id (a wrong secret, or the
wrong authentication method) within `WINDOW` seconds lock that client_id out for `LOCKOUT`
seconds: `/token` then refuses it with `429 slow_down` and `Retry-After` *before* looking at
what it presents, so a correct secret is refused too (otherwise the lock would not stop
anyone), and other clients are not touched. The first request after the lock ends is judged
normally; a lock is never extended by the requests it refuses. Unknown client ids are not
counted: there is nothing to protect, and counting them would let random ids fill the store.

A client_id is public, so anyone who knows one can keep it locked by sending bad secrets;
the short lock bounds that nuisance. Secrets are 256 random bits, so the lock is not what
stops guessing: it stops a caller (a broken deployment, or an attacker) from hammering the
endpoint with one client's failures, and makes the cause visible to the client's operator.

Hot path: whether a client_id is locked is a lookup in a dict of this process (`retry_after`
neither awaits nor does I/O); only a failure costs a round trip. With Redis, the failure
counter and the lock live in Redis (one Lua script call per failure, atomic across replicas),
and each replica copies the set of current locks into its dict every `SYNC_INTERVAL` seconds
(one script call per interval, whatever the request rate). The replica that records the
failure which locks a client_id knows at once; the others within `SYNC_INTERVAL`. Deleting a
client_id from the `tokensvc:lockouts` sorted set unlocks it everywhere as quickly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from tokensvc.background import BackgroundTask
from tokensvc.limits.buckets import REDIS_TIMEOUT
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient

log = structlog.get_logger("tokensvc.limits")

MAX_FAILURES = 10
WINDOW = 60.0  # seconds in which MAX_FAILURES failures lock a client_id
LOCKOUT = 60.0  # seconds a client_id stays locked
SYNC_INTERVAL = 0.25  # seconds between a replica's reads of the current Redis locks

# One hash tag for every lockout key: a failure's script updates its counter and the set of
# locks together, which a Redis Cluster allows only within one slot.
FAILURES_PREFIX = "tokensvc:{lockouts}:authfail:"
LOCKS_KEY = "tokensvc:{lockouts}:locks"


class Lockouts(Protocol):
    """invalid_client lockouts per client_id.

    * `retry_after(client_id)`: whole seconds (rounded up) the client_id stays locked out as
      far as this process knows, 0 when it is not. Called on every authentication, so it is
      synchronous and costs a dict lookup: no await, no I/O.
    * `record_failure(client_id)`: count one failed authentication; the failure that makes
      `max_failures` within `window` seconds locks the client_id for `lockout` seconds. Returns
      the seconds (rounded up) it is locked from now, 0 while it is not. Failures are counted
      atomically (in Redis, across replicas); while locked, failures neither count nor extend
      the lock, and the count starts afresh once the lock is over.
    * A lock recorded anywhere shows in every sharing replica's `retry_after` within
      `SYNC_INTERVAL` seconds, and in the recording replica's at once.
    * Never raises: when the backend does not answer, no lock starts (fails open) and the
      known locks run out as they would have.
    """

    def retry_after(self, client_id: str) -> int: ...

    async def record_failure(self, client_id: str) -> int: ...


def _check(max_failures: int, window: float, lockout: float) -> None:
    if not isinstance(max_failures, int) or max_failures < 1:
        raise ValueError(f"max_failures must be an integer >= 1, got {max_failures!r}")
    if not (window > 0 and lockout > 0):
        raise ValueError("window and lockout must be positive seconds")


class _Locks:
    """This process's view of the current locks: client_id -> when the lock ends."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._locked: dict[str, float] = {}

    def retry_after(self, client_id: str) -> int:
        ends = self._locked.get(client_id)
        if ends is None:
            return 0
        left = ends - self._clock()
        if left <= 0:
            self._locked.pop(client_id, None)
            return 0
        return math.ceil(left)

    def _lock(self, client_id: str, seconds: float) -> None:
        self._locked[client_id] = self._clock() + seconds


# --------------------------------------------------------------------------- memory


class MemoryLockouts(_Locks):
    """Counters and locks in this process only. Atomic because nothing awaits. Holds at most
    one counter and one lock per registered client (unknown ids are never counted)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        lockout: float = LOCKOUT,
    ) -> None:
        _check(max_failures, window, lockout)
        super().__init__(clock)
        self._max_failures = max_failures
        self._window = window
        self._lockout = lockout
        self._failures: dict[str, tuple[int, float]] = {}  # -> (failures, window ends)

    async def record_failure(self, client_id: str) -> int:
        locked = self.retry_after(client_id)
        if locked:
            return locked
        now = self._clock()
        failures, ends = self._failures.get(client_id, (0, now + self._window))
        if ends <= now:
            failures, ends = 0, now + self._window
        failures += 1
        if failures < self._max_failures:
            self._failures[client_id] = (failures, ends)
            return 0
        self._failures.pop(client_id, None)
        self._lock(client_id, self._lockout)
        return math.ceil(self._lockout)


# --------------------------------------------------------------------------- redis

# Numbers are formatted with %.0f before they reach Redis (a bare Lua number may be rendered
# in exponent notation). Times are Redis's own clock (TIME) in milliseconds, so replicas with
# skewed clocks still agree on when a lock ends.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1]: the client's failure counter; KEYS[2]: the sorted set of locks (client_id scored
# by the instant its lock ends). ARGV: client_id, max_failures, window (ms), lockout (ms).
# Returns the milliseconds the client_id is locked from now, 0 when it is not. All locks last
# as long, so the set expires exactly when its newest lock ends; older ones are pruned here.
_FAIL = (
    _NOW_MS
    + """
local ends = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if ends > now then return ends - now end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if failures < tonumber(ARGV[2]) then return 0 end
local lockout = tonumber(ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
redis.call('ZADD', KEYS[2], string.format('%.0f', now + lockout), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return lockout
"""
)

# KEYS[1]: the sorted set of locks. Returns [client_id, milliseconds left, ...] of the locks
# still in force. Reads only.
_LOCKED = (
    _NOW_MS
    + """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf',
                         'WITHSCORES')
for i = 2, #found, 2 do found[i] = tonumber(found[i]) - now end
return found
"""
)


class RedisLockouts(_Locks):
    """Counters and locks in Redis, shared by every replica; a copy of the current locks in
    this process, refreshed every `sync_interval` seconds by a task `start` runs."""

    def __init__(
        self,
        client: RedisClient,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        lockout: float = LOCKOUT,
        sync_interval: float = SYNC_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(max_failures, window, lockout)
        super().__init__(clock)
        self._fail: Any = client.register_script(_FAIL)
        self._read: Any = client.register_script(_LOCKED)
        self._args = (max_failures, math.ceil(window * 1000), math.ceil(lockout * 1000))
        self._sync_interval = sync_interval
        self._noted_during_sync: dict[str, float] | None = None
        self._task = BackgroundTask("tokensvc-lockout-sync")
        self._unavailable = False

    async def record_failure(self, client_id: str) -> int:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                left_ms = int(
                    await self._fail(
                        keys=[FAILURES_PREFIX + client_id, LOCKS_KEY], args=[client_id, *self._args]
                    )
                )
        except DRIVER_ERRORS as exc:  # TimeoutError included
            self._report(exc)
            return 0
        if left_ms <= 0:
            return 0
        self._lock(client_id, left_ms / 1000)
        if self._noted_during_sync is not None:
            self._noted_during_sync[client_id] = self._locked[client_id]
        return math.ceil(left_ms / 1000)

    async def sync(self) -> None:
        """Replace this process's copy of the locks with Redis's (one round trip). A lock this
        process records while the read is under way is kept: the read may predate it."""
        self._noted_during_sync = {}
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                found = await self._read(keys=[LOCKS_KEY])
        except DRIVER_ERRORS as exc:  # TimeoutError included
            self._report(exc)
            return
        finally:
            noted, self._noted_during_sync = self._noted_during_sync, None
        now = self._clock()
        locked = {
            (cid.decode() if isinstance(cid, bytes) else str(cid)): now + int(left) / 1000
            for cid, left in zip(found[::2], found[1::2], strict=True)
        }
        locked.update(noted)
        self._locked = locked
        if self._unavailable:
            self._unavailable = False
            log.info("client lockouts shared again: redis answers")

    def _report(self, exc: BaseException) -> None:
        if not self._unavailable:
            self._unavailable = True
            log.warning("client lockouts not shared: redis unavailable", error=type(exc).__name__)

    async def start(self) -> None:
        """Start copying the locks every `sync_interval` seconds (the first copy at once)."""
        self._task.start(self._run)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # a bug must not stop the copying for good
                log.exception("client lockout sync failed")
            await asyncio.sleep(self._sync_interval)

    async def close(self) -> None:
        """Stop the copying task. The Redis client belongs to the caller."""
        await self._task.stop()
