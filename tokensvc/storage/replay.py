"""Values accepted once (RFC 7523 §3 `jti` of client assertions; later DPoP proofs, RFC 9449
§11.1): the first use of a key wins, on every replica, until the value expires anyway.

Redis when configured (`SET NX EXAT`: one atomic command, so of any number of replicas and
requests racing one key exactly one is first); memory otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tokensvc.errors import StoreUnavailable
from tokensvc.expiring import ExpiringDict
from tokensvc.inprocess import InProcess
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, RedisStore

KEY_PREFIX = "tokensvc:once:"


class MemoryReplay(InProcess):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: ExpiringDict[bytes, float] = ExpiringDict(lambda until: until, clock())

    async def first_use(self, key: bytes, until: float) -> bool:
        now = self._clock()
        seen = self._seen.entries.get(key)
        if seen is not None and seen > now:
            return False
        self._seen.entries[key] = max(until, now)
        self._seen.swept(now)
        return True


class RedisReplay(RedisStore):
    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)

    async def first_use(self, key: bytes, until: float) -> bool:
        name = KEY_PREFIX + key.hex()
        # Whole seconds, rounded up: the key never goes before `until`.
        expires = max(int(until) + 1, int(time.time()) + 1)
        try:
            return bool(await self._redis.set(name, b"1", nx=True, exat=expires))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc
