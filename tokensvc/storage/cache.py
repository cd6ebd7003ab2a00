"""An in-process cache in front of a store read on the `/token` hot path: clients (every
request) and resources (every request that names one, RFC 8707 §2).

A change made through another process reaches this one through the change feed
(`storage.changes`, which calls `forget` or `clear` within a second); `ttl` seconds
(`TOKENSVC_CLIENT_CACHE_TTL`, default 30, for both) bound the staleness only when the feed is
down. Unknown keys are remembered for at most 5 s, and the cache holds at most `maxsize`
entries, so random client ids or resource URIs cannot grow it without bound or hammer the
database. When an entry expires under load, the requests that find it expired share one read
(measured: without that, 32 concurrent requests each queued a database read every `ttl`).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from tokensvc.models import Client, Resource
from tokensvc.storage.protocols import ClientStore

NEGATIVE_TTL = 5.0

V = TypeVar("V")


class Keyed(Protocol[V]):
    """What the cache needs of the store behind it: records under one string key, as
    `ClientStore` and `ResourceStore` keep them. Not a store contract of its own (those are
    in `storage.protocols`), only their common shape."""

    async def get(self, key: str, /) -> V | None: ...

    async def add(self, record: V, /) -> bool: ...

    async def list(self) -> list[V]: ...

    async def remove(self, key: str, /) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class Cached(ABC, Generic[V]):
    """`get` served from memory for `ttl` seconds (misses for at most `NEGATIVE_TTL`); `add`
    and `remove` forget the key here at once, other replicas when the change feed tells them
    (`forget`), within `ttl` at worst; `list` always reads the store (the CLI, never the hot
    path)."""

    def __init__(
        self,
        inner: Keyed[V],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        maxsize: int = 10_000,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._maxsize = maxsize
        self._entries: dict[str, tuple[float, V | None]] = {}
        self._inflight: dict[str, asyncio.Future[V | None]] = {}
        # Bumped by `forget` and `clear`: a read that started before keeps its answer to itself.
        self._generation = 0

    @abstractmethod
    def _key(self, record: V) -> str:
        """The key `get` and `remove` take for `record`."""

    def instrument(self, wrap: Callable[[Keyed[V]], Keyed[V]]) -> None:
        """Wrap the store behind the cache (e.g. to time its calls); hits stay untouched."""
        self._inner = wrap(self._inner)

    def peek(self, key: str) -> tuple[bool, V | None]:
        """(fresh, record) from memory only: a caller on the hot path skips a coroutine when
        `fresh`, and calls `get` otherwise."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return True, entry[1]
        return False, None

    async def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                # the reader was cancelled: read here instead
        return await self._read(key, now)

    async def _read(self, key: str, now: float) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        generation = self._generation
        try:
            record = await self._inner.get(key)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        if generation == self._generation:  # else it may predate a change: not kept
            if len(self._entries) >= self._maxsize:
                self._entries.pop(next(iter(self._entries)))
            ttl = self._ttl if record is not None else min(self._ttl, NEGATIVE_TTL)
            self._entries[key] = (now + ttl, record)
        future.set_result(record)
        return record

    async def add(self, record: V) -> bool:
        self._entries.pop(self._key(record), None)
        self._inflight.pop(self._key(record), None)
        return await self._inner.add(record)

    async def list(self) -> list[V]:
        return await self._inner.list()

    async def remove(self, key: str) -> bool:
        self._entries.pop(key, None)
        self._inflight.pop(key, None)
        return await self._inner.remove(key)

    def forget(self, key: str) -> None:
        """The change feed saw `key` change: the next `get` reads the store. A read already
        under way (which may have read the old record) still answers its callers but is not
        kept, nor joined by later callers."""
        self._entries.pop(key, None)
        self._inflight.pop(key, None)
        self._generation += 1

    def clear(self) -> None:
        """Forget everything (the change feed cannot tell what it missed), reads under way
        included, as `forget` does for one key."""
        self._entries.clear()
        self._inflight.clear()
        self._generation += 1

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()


class CachedClients(Cached[Client]):
    def _key(self, record: Client) -> str:
        return record.client_id

    async def replace(self, client: Client) -> bool:
        """`ClientStore.replace`, forgetting the old record here at once."""
        self._entries.pop(client.client_id, None)
        self._inflight.pop(client.client_id, None)
        return await cast("ClientStore", self._inner).replace(client)

    async def touch(self, client_id: str) -> None:
        """`ClientStore.touch`: forgotten here at once, elsewhere through the change feed."""
        self.forget(client_id)
        await cast("ClientStore", self._inner).touch(client_id)


class CachedResources(Cached[Resource]):
    def _key(self, record: Resource) -> str:
        return record.identifier
