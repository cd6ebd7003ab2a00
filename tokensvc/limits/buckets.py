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

import time
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog

from tokensvc.storage.redis_client import DRIVER_ERRORS

log = structlog.get_logger("tokensvc.limits")

KEY_PREFIX = "tokensvc:rate:"
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

# KEYS[1]: the client's bucket. ARGV[1]: microseconds per token (1e6 / rate); ARGV[2]: burst.
# Returns 0 when a token was taken, else the microseconds until one is there. Redis's own
# clock (TIME) is the one clock every replica shares; the key lives until the bucket is full.
# Numbers are formatted with %.0f before they reach Redis: a bare Lua number may be rendered in
# exponent notation, which SET would store and tonumber read back imprecisely.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + interval
local wait = tat - tonumber(ARGV[2]) * interval - now
if wait >= 1 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
return 0
"""


class RedisBuckets:
    """Buckets shared by every replica: one registered Lua script call (EVALSHA) per `take`,
    that is one Redis round trip per request of a rate-limited client, and none for others."""

    def __init__(
        self, client: aioredis.Redis, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._script: Any = client.register_script(_TAKE)
        self._clock = clock
        self._resume_at = 0.0  # while clock() is before this, admit without asking Redis

    async def take(self, client_id: str, rate: float, burst: int) -> float:
        if self._resume_at and self._clock() < self._resume_at:
            return 0.0
        try:
            wait_us = await self._script(keys=[KEY_PREFIX + client_id], args=[1e6 / rate, burst])
        except DRIVER_ERRORS as exc:
            if not self._resume_at:
                log.warning("rate limits unchecked: redis unavailable", error=type(exc).__name__)
            self._resume_at = self._clock() + OUTAGE_BACKOFF
            return 0.0
        if self._resume_at:
            log.info("rate limits checked again: redis answers")
            self._resume_at = 0.0
        return int(wait_us) / 1e6
