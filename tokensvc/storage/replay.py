"""Values accepted once (RFC 7523 §3 `jti` of client assertions; later DPoP proofs, RFC 9449
§11.1): the first use of a key wins, on every replica, until the value expires anyway.

Redis when configured (`SET NX EXAT`: one atomic command, so of any number of replicas and
requests racing one key exactly one is first); memory otherwise. Checks that arrive in the
same turn of the event loop share one script call (`storage.batch`), as code exchanges do:
one round trip for the batch, on a single server or behind Sentinel; on a cluster each key is
its own `SET NX` (a script may touch only one hash slot).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tokensvc.errors import StoreUnavailable
from tokensvc.expiring import ExpiringDict
from tokensvc.inprocess import InProcess
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, RedisStore, is_cluster
from tokensvc.storage.batch import batched_or_one

KEY_PREFIX = "tokensvc:once:"

# KEYS: the keys of one batch; ARGV[i]: the Unix time KEYS[i] may go. 1 where the key was
# set (its first use), 0 where it was there already. Each SET NX is atomic on its own.
_FIRST_USES = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '1', 'NX', 'EXAT', ARGV[i]) then out[i] = 1 else out[i] = 0 end
end
return out
"""


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
        self._script: Any = client.register_script(_FIRST_USES)
        self.batchers, self._submit = batched_or_one(
            "first_use", self._many, self._one, batch=not is_cluster(client)
        )

    async def first_use(self, key: bytes, until: float) -> bool:
        # Whole seconds, rounded up: the key never goes before `until`.
        expires = max(int(until) + 1, int(time.time()) + 1)
        return await self._submit((KEY_PREFIX + key.hex(), expires))

    async def _many(self, items: list[tuple[str, int]]) -> list[bool]:
        keys = [name for name, _ in items]
        try:
            results = await self._script(keys=keys, args=[expires for _, expires in items])
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc
        return [bool(result) for result in results]

    async def _one(self, item: tuple[str, int]) -> bool:
        """One key, one plain command: what a cluster gets (no script to load on each node)."""
        name, expires = item
        try:
            return bool(await self._redis.set(name, b"1", nx=True, exat=expires))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc
