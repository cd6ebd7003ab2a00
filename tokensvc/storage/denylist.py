"""Revoked access tokens (RFC 7009 §2): a compact deny-list keyed by `jti`.

An entry lives exactly as long as the token it blocks would have (until its `exp`), so the list
never holds more than the revoked tokens still alive. Redis when configured, so that every
replica refuses a revoked token; memory otherwise. In Redis the lookups of one turn of the event
loop share one `MGET` (`storage.batch`: a resource server introspecting, or a service
exchanging tokens, asks for many at once); on a cluster each is its own `EXISTS` (keys of one
command must share a hash slot).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tokensvc.errors import StoreUnavailable
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, is_cluster
from tokensvc.storage.batch import batched_or_one

KEY_PREFIX = "tokensvc:revoked:"


class MemoryDenyList:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, float] = {}

    async def add(self, jti: str, until: float) -> None:
        now = self._clock()
        if len(self._entries) % 1024 == 0:
            self._entries = {j: u for j, u in self._entries.items() if u > now}
        if until > now:
            self._entries[jti] = until

    async def contains(self, jti: str) -> bool:
        until = self._entries.get(jti)
        return until is not None and until > self._clock()


class RedisDenyList:
    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self.batchers, self._contains = batched_or_one(
            "contains", self._many, self._one, batch=not is_cluster(client)
        )

    async def add(self, jti: str, until: float) -> None:
        if until <= time.time():
            return  # already expired: nothing to block
        try:
            await self._redis.set(KEY_PREFIX + jti, b"1", exat=max(int(until) + 1, 1))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc

    async def contains(self, jti: str) -> bool:
        return await self._contains(KEY_PREFIX + jti)

    async def _many(self, keys: list[str]) -> list[bool]:
        try:
            values = await self._redis.mget(keys)
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc
        return [value is not None for value in values]

    async def _one(self, key: str) -> bool:
        try:
            return bool(await self._redis.exists(key))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc
