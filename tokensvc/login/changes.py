"""The login front-end's end of the change feed: one `GET /internal/changes` stream kept open
in the background, so that a client removed or changed at the token service is no longer
served from the front-end's cache within a second (SPEC: every admin change is in force
everywhere within 1 s). The front-end has no database; the token service replica at the other
end forwards what its own feed applies (`tokensvc.http.changestream`).

On each change the cache forgets the client (a resource: the clients naming it; a reset, or
anything it cannot read: everything); federations are not cached here. On every
(re)connection it forgets everything, since changes may have passed while no stream was open.
A stream that ends (the replica shuts down) or fails is reopened after a backoff from 0.1 s
doubling to 1 s; meanwhile the cache's TTL (`tokenapi.CLIENT_CACHE_TTL`) is the fallback.
Nothing here reaches a request: failures are logged (their class only) and retried.
"""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from tokensvc.background import BackgroundTask
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.storage.changes import CLIENT, FEDERATION, PING, RESOURCE, parse

log = structlog.get_logger("tokensvc")

BACKOFF = (0.1, 1.0)  # seconds before reopening the stream, first and at most


class StreamRefused(Exception):
    """The internal API answered the stream with something else than 200."""


class ChangeFollower:
    """Follows the token service's change stream from `start` until `close`."""

    def __init__(self, api: TokenAPI, backoff: tuple[float, float] = BACKOFF) -> None:
        self._api = api
        self._backoff = backoff
        self._task = BackgroundTask("tokensvc-login-changes")
        self._following = False
        self._failures = 0
        self.connections = 0  # streams opened (for tests)

    def start(self) -> None:
        self._task.start(self._run)

    async def close(self) -> None:
        """Stop following (idempotent): the stream's connection closes with the task."""
        await self._task.stop()

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                await self._follow()
                delay = self._backoff[0]  # ended cleanly: reopen soon, elsewhere maybe
                if self._following:
                    log.info("change stream ended; reopening")
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, StreamRefused) as exc:
                delay = self._lost(exc, delay)
            except Exception as exc:  # a bug must not stop the following for good
                log.exception("change stream failed")
                delay = self._lost(exc, delay)
            self._following = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    def _lost(self, exc: BaseException, delay: float) -> float:
        if self._following:
            self._failures = 1
            log.warning(
                "change stream lost: cached clients fall back on their TTL until it is back",
                error=type(exc).__name__,
            )
            return self._backoff[0]
        if self._failures == 0:
            log.warning("change stream cannot open", error=type(exc).__name__)
        self._failures += 1
        return delay

    async def _follow(self) -> None:
        async with self._api.open_changes() as resp:
            if resp.status != 200:
                raise StreamRefused(f"internal API answered {resp.status}")
            self._api.forget_all()  # whatever passed while no stream was open
            self._following, self._failures = True, 0
            self.connections += 1
            log.info("change stream following")
            async for raw in resp.content:
                change = parse(raw)
                if change is None or change.kind in (PING, FEDERATION):
                    continue
                if change.kind == CLIENT:
                    self._api.forget(change.key)
                elif change.kind == RESOURCE:
                    self._api.forget_naming(change.key)
                else:
                    self._api.forget_all()
