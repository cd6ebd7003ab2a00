"""An in-process cache in front of a `ClientStore`, for the `/token` hot path.

Staleness is bounded by `ttl` seconds: a client changed or removed through another process is
seen by this one at most `ttl` seconds later (`TOKENSVC_CLIENT_CACHE_TTL`, default 30).
Unknown ids are remembered for at most 5 s, and the cache holds at most `maxsize` entries, so
random client ids cannot grow it without bound or hammer the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tokensvc.models import Client
from tokensvc.storage.protocols import ClientStore

NEGATIVE_TTL = 5.0


class CachedClients:
    def __init__(
        self,
        inner: ClientStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        maxsize: int = 10_000,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._maxsize = maxsize
        self._entries: dict[str, tuple[float, Client | None]] = {}

    def instrument(self, wrap: Callable[[ClientStore], ClientStore]) -> None:
        """Wrap the store behind the cache (e.g. to time its calls); hits stay untouched."""
        self._inner = wrap(self._inner)

    async def get(self, client_id: str) -> Client | None:
        entry = self._entries.get(client_id)
        now = self._clock()
        if entry is not None and entry[0] > now:
            return entry[1]
        client = await self._inner.get(client_id)
        if len(self._entries) >= self._maxsize:
            self._entries.pop(next(iter(self._entries)))
        ttl = self._ttl if client is not None else min(self._ttl, NEGATIVE_TTL)
        self._entries[client_id] = (now + ttl, client)
        return client

    async def add(self, client: Client) -> bool:
        self._entries.pop(client.client_id, None)
        return await self._inner.add(client)

    async def list(self) -> list[Client]:
        return await self._inner.list()

    async def remove(self, client_id: str) -> bool:
        self._entries.pop(client_id, None)
        return await self._inner.remove(client_id)

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()
