"""The change feed from Postgres: what the triggers of `schema/0009_change_feed.sql` record in
table `changes` and announce on channel `tokensvc_changes`, applied to this process's caches
(`storage.changes.ChangeHub`) within a second of the commit, whoever wrote it.

One dedicated connection (not the pool's: LISTEN is session state, and the pool's connections
come and go), `application_name` 'tokensvc-changes', follows the feed:

* after connecting it LISTENs, then reads the rows after the last `seq` it applied, so a change
  committed while it was away is applied too (LISTEN first: a commit in between is read or
  announced, never neither). The triggers make writers commit in `seq` order, so "after the
  last seq" is exact. When it cannot know what it missed (no baseline yet at its first start,
  rows past its last seq already purged, `seq` gone backwards in a restored database), it
  clears every cache instead;
* each notification forgets its key at once, in the connection's callback;
* every `check_interval` seconds it asks for `max(seq)`, one index lookup: that is the
  keepalive (a connection that stopped answering is replaced) and the catch-up for a
  notification lost without the connection breaking.

Behind a PgBouncer in transaction mode (`?pgbouncer=true`) LISTEN does not work (the session
that listens is whichever server connection the statement ran on), so the feed polls
`max(seq)` every `poll_interval` seconds (0.25 s: still well within the second) instead.

Nothing here reaches the request path: while the feed is down the caches keep serving, stale
for at most their TTL (`TOKENSVC_CLIENT_CACHE_TTL`), and the feed reconnects with a backoff
from 0.1 s doubling to 1 s. Log lines name the error's class only (an asyncpg message may
quote the server's, never our DSN, but nothing else is needed).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

from tokensvc.background import BackgroundTask
from tokensvc.storage.changes import ChangeHub
from tokensvc.storage.postgres.pool import CONNECT_TIMEOUT, DRIVER_ERRORS, split_pgbouncer

log = structlog.get_logger("tokensvc")

CHANNEL = "tokensvc_changes"
APPLICATION_NAME = "tokensvc-changes"  # pg_stat_activity: which backend is the feed's
CHECK_INTERVAL = 2.0  # seconds between max(seq) checks while listening
POLL_INTERVAL = 0.25  # seconds between polls behind PgBouncer
QUERY_TIMEOUT = 2.0  # seconds: a check slower than this means the connection is gone
BACKOFF = (0.1, 1.0)  # seconds before the first reconnection, and at most
PAGE = 1000  # rows read per catch-up query

_BOUNDS = "SELECT min(seq) AS lo, max(seq) AS hi FROM changes"
_NEWEST = "SELECT max(seq) FROM changes"
_AFTER = "SELECT seq, kind, key FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2"
_NAMED = "SELECT seq, kind, key FROM changes WHERE seq = ANY($1::bigint[]) ORDER BY seq"


class FeedLost(Exception):
    """The feed's connection closed under it."""


_LOST: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, FeedLost)


class PostgresChangeFeed:
    """Follows `changes` on a connection of its own, from `start` until `close`."""

    def __init__(
        self,
        dsn: str,
        hub: ChangeHub,
        *,
        check_interval: float = CHECK_INTERVAL,
        poll_interval: float = POLL_INTERVAL,
        backoff: tuple[float, float] = BACKOFF,
    ) -> None:
        self._dsn, polling = split_pgbouncer(dsn)
        self.mode = "poll" if polling else "listen"
        self._hub = hub
        self._interval = poll_interval if polling else check_interval
        self._backoff = backoff
        self._last: int | None = None  # the newest seq applied (or covered by a reset)
        self._wake = asyncio.Event()
        self._named: set[int] = set()  # announced without their key: read them
        self._task = BackgroundTask("tokensvc-change-feed")
        self._following = False
        self._failures = 0  # attempts failed since the feed last followed
        self.syncs = 0  # connections that caught up (for tests and the logs)

    @property
    def last(self) -> int | None:
        return self._last

    def start(self) -> None:
        self._task.start(self._run)

    async def close(self) -> None:
        """Stop following (idempotent); the connection closes with the task."""
        await self._task.stop()
        self._following = False
        self._hub.following(self.mode, False)

    # ----------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await self._follow(conn)
            except asyncio.CancelledError:
                if conn is not None:
                    await _quit(conn)
                raise
            except _LOST as exc:
                delay = self._lost(exc, delay)
            except Exception as exc:  # a bug must not stop the feed for good
                log.exception("change feed failed", mode=self.mode)
                delay = self._lost(exc, delay)
            if conn is not None:
                conn.terminate()  # broken or hanging: no goodbye to wait for
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    def _lost(self, exc: BaseException, delay: float) -> float:
        """Log the first failure of a streak; the delay before the next attempt (short again
        after a working session)."""
        if self._following:
            self._following, self._failures = False, 1
            self._hub.following(self.mode, False)
            log.warning(
                "change feed lost: caches fall back on their TTL until it is back",
                mode=self.mode,
                error=type(exc).__name__,
            )
            return self._backoff[0]
        if self._failures == 0:
            log.warning("change feed cannot connect", mode=self.mode, error=type(exc).__name__)
        self._failures += 1
        return delay

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=QUERY_TIMEOUT,
            statement_cache_size=0 if self.mode == "poll" else 100,
            server_settings={"application_name": APPLICATION_NAME},
        )
        return conn

    async def _follow(self, conn: asyncpg.Connection) -> None:
        """Listen, catch up, then check every interval until the connection fails."""
        self._wake.clear()
        conn.add_termination_listener(self._closed)
        since = self._last  # before LISTEN: no notification of this session is applied yet
        if self.mode == "listen":
            await conn.add_listener(CHANNEL, self._notified)
        applied = await self._catch_up(conn, since)
        self._following, self._failures = True, 0
        self._hub.following(self.mode, True)
        self.syncs += 1
        log.info(
            "change feed following",
            mode=self.mode,
            seq=self._last,
            caught_up="reset" if applied is None else applied,
        )
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if conn.is_closed():
                raise FeedLost()
            if self._named:
                named, self._named = sorted(self._named), set()
                for row in await conn.fetch(_NAMED, named, timeout=QUERY_TIMEOUT):
                    self._apply(row["seq"], row["kind"], row["key"])
            await self._check(conn)

    def _closed(self, _conn: object) -> None:
        self._wake.set()

    # ----------------------------------------------------------------------- changes

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """`seq kind key`, or `seq` alone for a key too long for a notification."""
        seq, _, rest = str(payload).partition(" ")
        kind, _, key = rest.partition(" ")
        if not seq.isdigit():
            self._wake.set()  # not ours: the check finds whatever it may have announced
        elif not kind:
            self._named.add(int(seq))
            self._wake.set()
        else:
            self._apply(int(seq), kind, key)

    def _apply(self, seq: int, kind: str, key: str) -> None:
        self._hub.apply(kind, key)
        if self._last is None or seq > self._last:
            self._last = seq

    async def _catch_up(self, conn: asyncpg.Connection, since: int | None) -> int | None:
        """Apply the rows after `since`; None when everything was reset instead."""
        row = await conn.fetchrow(_BOUNDS, timeout=QUERY_TIMEOUT)
        assert row is not None  # an aggregate always returns its row
        lo, hi = row["lo"], row["hi"] or 0
        if since is None:
            reason = "no baseline"
        elif hi < since:
            reason = "seq went backwards (a restored database?)"
        elif lo is not None and lo > since + 1:
            reason = "purged past the last change seen"
        else:
            return await self._apply_after(conn, since)
        log.info("change feed resets every cache", reason=reason)
        self._last = hi  # a change announced meanwhile past it is applied again: harmless
        self._hub.reset()
        return None

    async def _check(self, conn: asyncpg.Connection) -> None:
        """The periodic check: apply what committed beyond the last seq applied."""
        newest = await conn.fetchval(_NEWEST, timeout=QUERY_TIMEOUT) or 0
        last = self._last or 0
        if newest < last:  # emptied or restored under a connection that stayed up
            log.info("change feed resets every cache", reason="seq went backwards")
            self._last = newest
            self._hub.reset()
        elif newest > last:
            await self._apply_after(conn, last)

    async def _apply_after(self, conn: asyncpg.Connection, since: int) -> int:
        """Apply every row after `since`, a page at a time; how many there were. The cursor is
        its own: a notification applied meanwhile may move `_last` past unread rows."""
        applied, cursor = 0, since
        while True:
            rows: list[Any] = await conn.fetch(_AFTER, cursor, PAGE, timeout=QUERY_TIMEOUT)
            for row in rows:
                self._apply(row["seq"], row["kind"], row["key"])
            applied += len(rows)
            if len(rows) < PAGE:
                return applied
            cursor = rows[-1]["seq"]


async def _quit(conn: asyncpg.Connection) -> None:
    """Say goodbye on shutdown (the server logs no lost connection), briefly."""
    try:
        await asyncio.wait_for(conn.close(), QUERY_TIMEOUT)
    except DRIVER_ERRORS:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
