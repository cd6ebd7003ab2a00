"""The change feed's backend-neutral half: what a process does when it learns that a client, a
resource or a federation changed (SPEC: every admin change is in force on every replica within
1 s).

A feed (`storage.postgres.changes`, fed by the database's own triggers) calls `apply` for each
change and `reset` when it cannot know what it missed. The hub then forgets the key in the
in-process caches that hold that kind of record (`watch`), and passes the change on to every
subscriber: the internal API's `GET /internal/changes` streams, through which the login
front-end, which has no database, forgets its own cached clients. Nothing here waits or does
I/O: a change is applied in the feed's callback, and the request path never sees the feed.

On the wire (`line`, `parse`) a change is one NDJSON line, `{"kind": ..., "key": ...}`;
`{"kind": "reset"}` means "forget everything", `{"kind": "ping"}` only keeps the stream alive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import orjson

from tokensvc.metrics import Metrics
from tokensvc.storage.cache import Cached

CLIENT, RESOURCE, FEDERATION = "client", "resource", "federation"
KINDS = frozenset({CLIENT, RESOURCE, FEDERATION})
RESET = "reset"  # forget everything: any kind a reader does not know means the same
PING = "ping"

# Changes a subscriber may fall behind by before it is sent a reset instead: a stream whose
# reader stopped reading must not hold memory without bound.
BACKLOG = 1000


class Change(NamedTuple):
    kind: str
    key: str = ""


def line(change: Change) -> bytes:
    """One NDJSON line of the internal API's change stream."""
    body: dict[str, str] = {"kind": change.kind}
    if change.kind not in (RESET, PING):
        body["key"] = change.key
    return orjson.dumps(body) + b"\n"


def parse(raw: bytes) -> Change | None:
    """A line of the stream; None for a blank one. A line that is not a change of a known kind
    reads as a reset: whoever wrote it knows something changed, the reader cannot tell what."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Change(RESET)
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        return Change(RESET)
    kind, key = body["kind"], body.get("key")
    if kind == PING:
        return Change(PING)
    if kind in KINDS and isinstance(key, str):
        return Change(kind, key)
    return Change(RESET)


class Subscription:
    """One subscriber's queue of changes: bounded (`BACKLOG`, then a single reset replaces
    the lot), ended by `ChangeHub.end_streams` (server shutdown)."""

    def __init__(self) -> None:
        self._queue: deque[Change] = deque()
        self._ready = asyncio.Event()
        self.ended = False

    def push(self, change: Change) -> None:
        if change.kind == RESET or len(self._queue) >= BACKLOG:
            self._queue.clear()  # a reset covers whatever was still queued, and `change`
            change = Change(RESET)
        self._queue.append(change)
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def next(self, within: float) -> list[Change]:
        """What arrived, once something did, or `[]` after `within` seconds or at the end."""
        if not self._queue and not self.ended:
            self._ready.clear()
            try:
                async with asyncio.timeout(within):
                    await self._ready.wait()
            except TimeoutError:
                pass
        batch = list(self._queue)
        self._queue.clear()
        return batch


class ChangeHub:
    """Applies changes to the caches that watch them and hands them to the subscribers."""

    def __init__(self) -> None:
        self._caches: dict[str, list[Cached[Any]]] = {}
        self._subscribers: set[Subscription] = set()
        self._metrics: Metrics | None = None
        self._mode: str | None = None  # the feed's, once one runs
        self._connected = False
        self._streams_ended = False

    def watch(self, kind: str, cache: Cached[Any]) -> None:
        """`cache` forgets records of `kind` ('client', 'resource') as they change."""
        self._caches.setdefault(kind, []).append(cache)

    def observe(self, metrics: Metrics) -> None:
        """Report the feed's state and the changes it applies in `metrics`."""
        self._metrics = metrics
        self._report()

    def apply(self, kind: str, key: str) -> None:
        """`key` of `kind` changed (was added, updated or removed). An unknown kind (a
        TRUNCATE's, or a newer writer's) resets everything."""
        if kind not in KINDS:
            self.reset()
            return
        for cache in self._caches.get(kind, ()):
            cache.forget(key)
        self._publish(Change(kind, key))

    def reset(self) -> None:
        """Forget everything: the feed cannot tell what it missed (first start, purged past
        what it last saw, a restored database)."""
        for caches in self._caches.values():
            for cache in caches:
                cache.clear()
        self._publish(Change(RESET))

    def following(self, mode: str, connected: bool) -> None:
        """The feed's state: following the database (`mode` 'listen' or 'poll') or not (the
        caches then fall back on their TTL)."""
        self._mode, self._connected = mode, connected
        self._report()

    @property
    def connected(self) -> bool:
        return self._connected

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A subscription for as long as the `with` block lasts; already ended once the
        streams were ended (a stream opened while the listener shuts down must not hold it)."""
        subscription = Subscription()
        if self._streams_ended:
            subscription.end()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def end_streams(self) -> None:
        """End every current subscription (the internal listener shuts down): the streams
        finish their responses instead of holding the shutdown until its timeout, and so
        does any opened after this."""
        self._streams_ended = True
        for subscription in self._subscribers:
            subscription.end()

    def _publish(self, change: Change) -> None:
        for subscription in self._subscribers:
            subscription.push(change)
        if self._metrics is not None:
            self._metrics.change_feed_events.labels(change.kind).inc()

    def _report(self) -> None:
        if self._metrics is not None and self._mode is not None:
            self._metrics.change_feed_connected.labels(self._mode).set(int(self._connected))
