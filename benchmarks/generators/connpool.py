"""Keep-alive connections shared by open-loop requests: a request takes an idle connection,
or opens one while fewer than `limit` exist, or waits for the next one given back. Used by
the Python generator's open loop and by the soak (benchmarks/soak)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from benchmarks.generators.httpclient import Endpoint, HttpConnection


class ConnectionPool:
    def __init__(
        self, endpoint: Endpoint, limit: int, connections: Iterable[HttpConnection] = ()
    ) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.idle: deque[HttpConnection] = deque(connections)
        self.total = len(self.idle)
        self._waiters: deque[asyncio.Future[HttpConnection | None]] = deque()

    async def acquire(self) -> HttpConnection:
        """A live connection; OSError when a new one cannot be opened."""
        while True:
            while self.idle:
                c = self.idle.pop()
                if not c.closed:
                    return c
                self.total -= 1
            if self.total < self.limit:
                self.total += 1
                try:
                    return await HttpConnection.open(self.endpoint)
                except OSError:
                    self.total -= 1
                    raise
            fut: asyncio.Future[HttpConnection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            c2 = await fut
            if c2 is not None and not c2.closed:
                return c2

    def release(self, c: HttpConnection) -> None:
        """Give `c` back (closed ones are forgotten; a waiter then opens a new one)."""
        given: HttpConnection | None = c
        if c.closed:
            self.total -= 1
            given = None
        if self._waiters:
            self._waiters.popleft().set_result(given)
        elif given is not None:
            self.idle.append(given)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
