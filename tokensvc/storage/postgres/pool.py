"""The Postgres connection pool every store shares (asyncpg), and how it meets PgBouncer.

Every driver, network and timeout failure becomes `StoreUnavailable("postgres", ...)`. The
pool replaces connections that broke, so the stores recover by themselves once the server is
back. Times cross the protocols as epoch floats and are stored as timestamptz. SQL lives in
module constants: asyncpg prepares and caches each statement per connection, as a named
prepared statement. Behind a PgBouncer in transaction mode (before 1.21) a connection's
statements may each run on another server connection, where such a name does not exist:
`?pgbouncer=true` on the URL (`split_pgbouncer`) switches the cache off, so every statement is
described in one round trip and parsed again, unnamed, in the one that runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tokensvc.config import ConfigError
from tokensvc.errors import StoreUnavailable

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

# What `Pool.connection()` lends: a pooled connection with the `asyncpg.Connection` API.
PooledConnection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

STORE = "postgres"
CONNECT_TIMEOUT = 2.0  # seconds to open a connection; an outage must be a quick 503
COMMAND_TIMEOUT = 5.0  # seconds per statement
ACQUIRE_TIMEOUT = 5.0  # seconds to get a pooled connection, connecting included
CLOSE_TIMEOUT = 5.0

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,  # ConnectionError (refused, reset) included
    TimeoutError,  # asyncio.TimeoutError is the same class on 3.11
    # A connection whose server sent an error unprompted (the FATAL of a shutdown or a crash)
    # is stuck until its socket closes; a query on it in between raises this (tests/faults).
    asyncpg.InternalClientError,
)


def to_timestamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def to_epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


PGBOUNCER_FLAG = "pgbouncer"


def split_pgbouncer(url: str) -> tuple[str, bool]:
    """`url` without its `pgbouncer=true|false` query parameter (Prisma's convention), and
    whether it said a PgBouncer in transaction mode is in front. Then no connection may rely
    on server session state, named prepared statements included: each transaction may run on
    a different server connection. The flag must go before asyncpg sees the URL, which would
    send it to the server as a setting, and both PgBouncer and Postgres refuse that."""
    parts = urlsplit(url)
    if PGBOUNCER_FLAG not in parts.query:  # the usual case, left untouched
        return url, False
    items = parts.query.split("&")
    kept = [item for item in items if item.partition("=")[0] != PGBOUNCER_FLAG]
    flags = [item.partition("=")[2].lower() for item in items if item not in kept]
    if not flags:
        return url, False
    if len(flags) > 1 or flags[0] not in ("true", "false"):
        raise ConfigError("TOKENSVC_DATABASE_URL: pgbouncer must be given once, as true or false")
    return urlunsplit(parts._replace(query="&".join(kept))), flags[0] == "true"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default `RESET ALL; UNLISTEN *; ...` round trip: the stores
    run single autocommit statements and never change session state (asyncpg still rolls back
    a transaction left open). Code borrowing `Postgres.connection()` must keep it that way."""


# Every type asyncpg has no built-in codec for that a statement here sends or reads.
_LOOKED_UP_TYPES = "SELECT NULL::int8[], NULL::bytea[], NULL::float8[], NULL::jsonb[]"


async def _look_up_types_in_one_transaction(conn: asyncpg.Connection) -> None:
    """For a new connection behind PgBouncer: asyncpg looks a type up on first sight with `jit`
    switched off for the session around the lookup, three statements that PgBouncer may send to
    three server connections, one of which then keeps `jit = off`. In one transaction they run
    on one, which ends as it began."""
    async with conn.transaction():
        await conn.fetchrow(_LOOKED_UP_TYPES)


class Pool:
    """The connection pool every Postgres store of tokensvc shares."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_cache_size: int = 100,
    ) -> Self:
        """Open the pool. With `min_size=0` nothing connects until first use, so a service can
        start (and report not-ready) while the database is still down. `dsn` may end in
        `?pgbouncer=true` (see `split_pgbouncer`); a malformed flag is a `ConfigError`."""
        dsn, pgbouncer = split_pgbouncer(dsn)
        if pgbouncer:
            statement_cache_size = 0
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                statement_cache_size=statement_cache_size,
                max_inactive_connection_lifetime=300.0,
                server_settings={"application_name": "tokensvc"},
                reset=_keep_session,
                init=_look_up_types_in_one_transaction if pgbouncer else None,
            )
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PooledConnection]:
        """A pooled connection; any driver failure, from acquiring it on, is `StoreUnavailable`.
        A connection that broke is dropped by the pool and replaced on the next acquire."""
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                try:
                    yield conn
                except asyncpg.InternalClientError:
                    conn.terminate()  # unusable whether or not its socket closes: replace it
                    raise
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        """Close the pool (idempotent). Waits briefly for borrowed connections, then cuts them."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout=CLOSE_TIMEOUT)
        except DRIVER_ERRORS:
            self.pool.terminate()


class PoolStore:
    """A store on the shared pool; its `ping` and `close` are the pool's."""

    def __init__(self, db: Pool) -> None:
        self._db = db

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        """Closes the pool shared with the sibling stores."""
        await self._db.close()
