"""Per-client request rates: one token bucket per client_id.

A client registered with `rate_limit` r (requests per second) and `rate_burst` b has a bucket
of b tokens that refills at r tokens per second; each request at `/token` takes one, and a
request that finds the bucket empty is refused with the time until the next token is there.
So a client may send b requests at once, and r per second for as long as it likes.

The bucket is kept as one number per client, the instant at which it will be full again (the
"theoretical arrival time" of GCRA, ITU-T I.371, which is this token bucket exactly): with an
interval T = 1/r, a request at `now` finds `tat = max(stored, now)` and is admitted when
`tat + T - b*T <= now` (a token is left), storing `tat + T`. A bucket untouched for b/r
seconds is full again, and its key has expired: idle clients cost nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, calls_by_slot

log = structlog.get_logger("tokensvc.limits")

KEY_PREFIX = "tokensvc:rate:"
# A Redis answer slower than this (seconds) counts as an outage: the request is admitted. (The
# client's own retries would otherwise hold a request for seconds while Redis is down.)
REDIS_TIMEOUT = 0.5
# After a Redis error the limiter admits without asking Redis for this many seconds, so an
# outage costs limited clients one failed round trip per second, not one per request.
OUTAGE_BACKOFF = 1.0
# Floating-point slack when comparing instants (seconds): a bucket holding exactly one token
# must not be refused for a rounding error.
_EPSILON = 1e-6


class RateLimiter(Protocol):
    """Token buckets keyed by client_id.

    * `take(client_id, rate, burst)` takes one token from the client's bucket (b = `burst`
      tokens, refilled at `rate` per second, full when first used) and returns 0.0; or, when
      the bucket is empty, takes nothing and returns the seconds until a token is there (> 0).
    * Atomic: of any number of concurrent takes from a bucket holding n tokens, exactly n
      succeed, in one process or, through a shared backend, across every replica.
    * Never raises: when the backend does not answer, the limiter admits (fails open) and
      logs it; a rate limit protects the service and must not become an outage of its own.
    """

    async def take(self, client_id: str, rate: float, burst: int) -> float: ...


# --------------------------------------------------------------------------- memory


class MemoryBuckets:
    """Buckets in this process only (`tokensvc dev`, or no `TOKENSVC_REDIS_URL`). Atomic
    because `take` never awaits. Holds one float per rate-limited client that has made a
    request; only authenticated clients reach it, so the registered clients bound it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def take(self, client_id: str, rate: float, burst: int) -> float:
        now = self._clock()
        interval = 1.0 / rate
        tat = max(self._tat.get(client_id, now), now) + interval
        wait = tat - burst * interval - now
        if wait > _EPSILON:
            return wait
        self._tat[client_id] = tat
        return 0.0


# --------------------------------------------------------------------------- redis

# KEYS: one bucket per take. ARGV[2i-1], ARGV[2i]: microseconds per token (1e6 / rate) and
# burst of KEYS[i]. Returns, per take, 0 when a token was taken, else the microseconds until one
# is there. The takes run in order, so a key named twice is taken from twice. Redis's own clock
# (TIME) is the one clock every replica shares; a key lives until its bucket is full again.
# Numbers are formatted with %.0f before they reach Redis: a bare Lua number may be rendered in
# exponent notation, which SET would store and tonumber read back imprecisely.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local waits = {}
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[2 * i - 1])
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    tat = tat + interval
    local wait = tat - tonumber(ARGV[2 * i]) * interval - now
    if wait >= 1 then
        waits[i] = math.ceil(wait)
    else
        waits[i] = 0
        redis.call('SET', key, string.format('%.0f', tat),
                   'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
    end
end
return waits
"""

# Takes per script call at most; more waiting in one loop iteration go in further calls.
MAX_BATCH = 256

_Take = tuple[str, float, int, "asyncio.Future[float]"]


class RedisBuckets:
    """Buckets shared by every replica, in one registered Lua script (EVALSHA).

    A request of a rate-limited client waits for exactly one Redis round trip, and a client
    without a limit never gets here. Takes made in the same event-loop iteration (concurrent
    requests) share that round trip: the first yields once to the loop, the others join it,
    then it makes the one script call for all of them. That adds no delay worth the name (one
    loop iteration, no timer), and under load it spreads the client library's per-call cost
    (tens of microseconds of CPU) over many requests.
    """

    def __init__(self, client: RedisClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._script: Any = client.register_script(_TAKE)
        self._clock = clock
        self._resume_at = 0.0  # while clock() is before this, admit without asking Redis
        self._gathering: list[_Take] | None = None  # the batch takes may still join
        self._handed_off: set[asyncio.Task[None]] = set()

    async def take(self, client_id: str, rate: float, burst: int) -> float:
        if self._resume_at and self._clock() < self._resume_at:
            return 0.0
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        take = (KEY_PREFIX + client_id, 1e6 / rate, burst, waiter)
        batch = self._gathering
        if batch is not None and len(batch) < MAX_BATCH:
            batch.append(take)
            return await waiter
        batch = self._gathering = [take]
        try:
            await asyncio.sleep(0)  # the other takes ready in this iteration join
        except asyncio.CancelledError:  # this request is gone; the others still need the call
            self._close(batch)
            if len(batch) > 1:
                call = asyncio.ensure_future(self._call(batch[1:]))
                self._handed_off.add(call)
                call.add_done_callback(self._handed_off.discard)
            raise
        self._close(batch)
        await self._call(batch)
        return waiter.result()

    def _close(self, batch: list[_Take]) -> None:
        if self._gathering is batch:
            self._gathering = None

    async def _call(self, batch: list[_Take]) -> None:
        """One script call for the batch; every waiter gets its answer, whatever happens."""
        keys = [take[0] for take in batch]

        async def take_slot(indexes: list[int]) -> list[int]:
            args: list[float | int] = []
            for i in indexes:
                args += (batch[i][1], batch[i][2])
            return list(await self._script(keys=[keys[i] for i in indexes], args=args))

        waits = [0] * len(batch)
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                for indexes, slot_waits in await calls_by_slot(self._client, keys, take_slot):
                    for i, wait in zip(indexes, slot_waits, strict=True):
                        waits[i] = wait
        except DRIVER_ERRORS as exc:  # TimeoutError included
            if not self._resume_at:
                log.warning("rate limits unchecked: redis unavailable", error=type(exc).__name__)
            self._resume_at = self._clock() + OUTAGE_BACKOFF
            waits = [0] * len(batch)
        except BaseException:  # cancelled: the others are admitted, as in an outage
            for *_, waiter in batch:
                if not waiter.done():
                    waiter.set_result(0.0)
            raise
        else:
            if self._resume_at:
                log.info("rate limits checked again: redis answers")
                self._resume_at = 0.0
        for (*_, waiter), wait_us in zip(batch, waits, strict=True):
            if not waiter.done():  # a follower cancelled meanwhile is gone
                waiter.set_result(int(wait_us) / 1e6)
