"""Clients, users, grants and refresh-token families in Postgres (asyncpg), one shared pool.

Every guarantee of `tokensvc.storage.protocols` that needs atomicity is kept by a single SQL
statement in autocommit, never by an explicit transaction:

* `issue` upserts the grant and inserts its first token in one CTE; a tombstone left by an
  earlier `revoke_grant` keeps its `revoked_at`, so the revocation wins.
* `rotate` retires the presented token and inserts its successor in one CTE whose UPDATE only
  matches a still-live row. Under READ COMMITTED a concurrent UPDATE of the same row waits for
  the first to commit and then re-checks `retired_at IS NULL`, so exactly one caller inserts a
  successor; the losers re-read the row and answer `Repeated` or reuse.
* `revoke_grant` is one upsert on the grant row; no token row is deleted, so a later
  presentation of any token of the family is still recognised.

Times cross the boundary as epoch floats (the protocol) and are stored as timestamptz.
Every driver, network and timeout failure becomes `StoreUnavailable("postgres", ...)`. The
pool replaces connections that broke, so the stores recover by themselves once the server is
back. SQL lives in module constants: asyncpg prepares and caches each statement per
connection, as a named prepared statement. Behind a PgBouncer in transaction mode (before 1.21)
a connection's statements may each run on another server connection, where such a name does
not exist: `?pgbouncer=true` on the URL (`split_pgbouncer`) switches the cache off, so every
statement is described in one round trip and parsed again, unnamed, in the one that runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from tokensvc.config import ConfigError
from tokensvc.errors import StoreUnavailable
from tokensvc.models import Client, Grant, RefreshState, User
from tokensvc.storage.batch import Batcher
from tokensvc.storage.protocols import (
    Rejected,
    Repeated,
    Rotated,
    RotateOutcome,
    SuccessorFactory,
)

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


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


# --------------------------------------------------------------------------- pool

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


class Postgres:
    """The shared pool and the three stores built on it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.clients = PostgresClients(self)
        self.users = PostgresUsers(self)
        self.grants = PostgresGrants(self)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_cache_size: int = 100,
    ) -> Postgres:
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
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
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


class _Store:
    def __init__(self, db: Postgres) -> None:
        self._db = db

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        """Closes the pool shared with the sibling stores."""
        await self._db.close()


# --------------------------------------------------------------------------- clients

_CLIENT_COLUMNS = (
    "client_id, name, auth_method, grant_types, redirect_uris, scopes, secret_hash, created_at,"
    " require_consent, rate_limit, rate_burst"
)
_CLIENT_GET = f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE client_id = $1"  # noqa: S608
_CLIENT_LIST = f"SELECT {_CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id"  # noqa: S608
_CLIENT_ADD = f"""
INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (client_id) DO NOTHING
"""  # noqa: S608
# Grants, their refresh tokens and the consents given to the client go with it (ON DELETE
# CASCADE).
_CLIENT_REMOVE = "DELETE FROM clients WHERE client_id = $1"


def _client(row: asyncpg.Record) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        auth_method=row["auth_method"],
        grant_types=frozenset(row["grant_types"]),
        redirect_uris=tuple(row["redirect_uris"]),
        scopes=frozenset(row["scopes"]),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"].timestamp(),
        require_consent=row["require_consent"],
        rate_limit=row["rate_limit"],
        rate_burst=row["rate_burst"],
    )


class PostgresClients(_Store):
    async def get(self, client_id: str) -> Client | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_CLIENT_GET, client_id)
        return None if row is None else _client(row)

    async def add(self, client: Client) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                _CLIENT_ADD,
                client.client_id,
                client.name,
                client.auth_method,
                sorted(client.grant_types),
                list(client.redirect_uris),
                sorted(client.scopes),
                client.secret_hash,
                _ts(client.created_at),
                client.require_consent,
                client.rate_limit,
                client.rate_burst,
            )
        return status == "INSERT 0 1"

    async def list(self) -> list[Client]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_CLIENT_LIST)
        return [_client(row) for row in rows]

    async def remove(self, client_id: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_CLIENT_REMOVE, client_id)
        return status == "DELETE 1"


# --------------------------------------------------------------------------- users

_USER_COLUMNS = "sub, username, password_hash, email, name, email_verified"
# No conflict target: a taken username or sub both mean "not added" (as in memory).
_USER_ADD = f"""
INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""  # noqa: S608
_USER_BY_USERNAME = f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1"  # noqa: S608
_USER_BY_SUB = f"SELECT {_USER_COLUMNS} FROM users WHERE sub = $1"  # noqa: S608


def _user(row: asyncpg.Record | None) -> User | None:
    if row is None:
        return None
    return User(
        sub=row["sub"],
        username=row["username"],
        password_hash=row["password_hash"],
        email=row["email"],
        name=row["name"],
        email_verified=row["email_verified"],
    )


class PostgresUsers(_Store):
    async def add(self, user: User) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                _USER_ADD,
                user.sub,
                user.username,
                user.password_hash,
                user.email,
                user.name,
                user.email_verified,
            )
        return status == "INSERT 0 1"

    async def by_username(self, username: str) -> User | None:
        async with self._db.connection() as conn:
            return _user(await conn.fetchrow(_USER_BY_USERNAME, username))

    async def by_sub(self, sub: str) -> User | None:
        async with self._db.connection() as conn:
            return _user(await conn.fetchrow(_USER_BY_SUB, sub))


# --------------------------------------------------------------------------- grants

# Revoke, or leave a tombstone for a grant not issued yet; the first revocation time stays.
_REVOKE = """
INSERT INTO grants (grant_id, created_at, revoked_at) VALUES ($1, $2, $2)
ON CONFLICT (grant_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at
WHERE grants.revoked_at IS NULL
"""

_LIVE_GRANT = """
SELECT client_id, sub, scope, auth_time, acr, amr, sid, claims FROM grants
WHERE grant_id = $1 AND revoked_at IS NULL AND client_id IS NOT NULL
"""

# The three hot statements take whole batches (see `tokensvc.storage.batch`): one statement,
# one round trip and one commit for every request of an event-loop turn.
#
# Issue: the grant and its first token. If the grant id already has a row (the tombstone of a
# revocation that overtook this issue), the row is completed but `revoked_at` is left alone,
# so the grant and token end up stored revoked, as if the revocation had come after; the
# statement answers whether each grant is live.
_ISSUE_MANY = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::jsonb[], $8::text[], $9::jsonb[], $10::float8[],
                         $11::bytea[], $12::float8[])
        AS e(grant_id, client_id, sub, scope, auth_time, acr, amr, sid, claims, created_epoch,
             token_hash, expires_epoch)
    -- times travel as epoch seconds (float8): cheaper to encode than timestamptz values
    CROSS JOIN LATERAL (SELECT to_timestamp(created_epoch) AS created_at,
                               to_timestamp(expires_epoch) AS expires_at) AS t
), grant_rows AS (
    INSERT INTO grants (grant_id, client_id, sub, scope, auth_time, acr, amr, sid, claims,
                        created_at)
    SELECT grant_id, client_id, sub, scope, auth_time, acr,
           CASE WHEN amr IS NULL THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(amr)) END,
           sid, claims, created_at
    FROM input
    ON CONFLICT (grant_id) DO UPDATE
    SET client_id = EXCLUDED.client_id, sub = EXCLUDED.sub, scope = EXCLUDED.scope,
        auth_time = EXCLUDED.auth_time, acr = EXCLUDED.acr, amr = EXCLUDED.amr,
        sid = EXCLUDED.sid, claims = EXCLUDED.claims
    RETURNING grant_id, revoked_at
), token_rows AS (
    INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at)
    SELECT i.token_hash, i.grant_id, i.created_at, i.expires_at
    FROM input i JOIN grant_rows g USING (grant_id)
    WHERE i.token_hash IS NOT NULL
)
SELECT grant_id, revoked_at IS NULL AS live FROM grant_rows
"""

_TOKEN_STATES = """
SELECT t.token_hash, t.grant_id, t.expires_at, t.retired_at, t.successor_box,
       g.revoked_at IS NOT NULL AS revoked,
       g.client_id, g.sub, g.scope, g.auth_time, g.acr, g.amr, g.sid, g.claims
FROM refresh_tokens t JOIN grants g ON g.grant_id = t.grant_id
WHERE t.token_hash = ANY($1::bytea[])
"""

# Rotate: retire each presented token and insert its successor, atomically. The UPDATE matches
# only a live row; a concurrent rotation of the same token (another batch) blocks on the row
# lock, re-checks `retired_at IS NULL` once the first commits, matches nothing, and so inserts
# nothing. With the same token twice in one batch the UPDATE joins its row to one input row
# only, so one successor is inserted; RETURNING names the winner by its new hash.
_ROTATE_MANY = """
WITH input AS (
    SELECT old_hash, to_timestamp(now_epoch) AS now, box, new_hash,
           to_timestamp(expires_epoch) AS expires_at
    FROM unnest($1::bytea[], $2::float8[], $3::bytea[], $4::bytea[], $5::float8[])
        AS e(old_hash, now_epoch, box, new_hash, expires_epoch)
), retired AS (
    UPDATE refresh_tokens t
    SET retired_at = i.now, successor_box = i.box
    FROM input i
    WHERE t.token_hash = i.old_hash
      AND t.retired_at IS NULL
      AND t.expires_at > i.now
      AND NOT EXISTS (SELECT 1 FROM grants g
                      WHERE g.grant_id = t.grant_id AND g.revoked_at IS NOT NULL)
    RETURNING t.grant_id, i.new_hash, i.now, i.expires_at
)
INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at)
SELECT new_hash, grant_id, now, expires_at FROM retired
RETURNING token_hash
"""

_COUNT_TOKENS = "SELECT count(*) FROM refresh_tokens WHERE grant_id = $1"


def _grant(grant_id: str, row: asyncpg.Record) -> Grant:
    amr = row["amr"]
    return Grant(
        grant_id=grant_id,
        client_id=row["client_id"],
        sub=row["sub"],
        scope=row["scope"],
        auth_time=row["auth_time"],
        acr=row["acr"],
        amr=tuple(amr) if amr is not None else None,
        sid=row["sid"],
        claims=orjson.loads(row["claims"]),
    )


_IssueRow = tuple[Any, ...]
_RotateRow = tuple[bytes, float, bytes, bytes, float]


class PostgresGrants(_Store):
    """Issue and rotate are batched per event-loop turn (`tokensvc.storage.batch`)."""

    def __init__(self, db: Postgres) -> None:
        super().__init__(db)
        self._issues: Batcher[_IssueRow, bool] = Batcher(self._issue_many)
        self._states: Batcher[bytes, asyncpg.Record | None] = Batcher(self._states_many)
        self._rotations: Batcher[_RotateRow, bool] = Batcher(self._rotate_many)

    async def issue(
        self, grant: Grant, token_hash: bytes | None, expires_at: float, now: float
    ) -> bool:
        """As the protocol says; also `False`, with nothing stored, if the grant's client no
        longer exists (removing a client ends its grants, and a grant row needs its client)."""
        return await self._issues.submit(
            (
                grant.grant_id,
                grant.client_id,
                grant.sub,
                grant.scope,
                grant.auth_time,
                grant.acr,
                orjson.dumps(list(grant.amr)).decode() if grant.amr is not None else None,
                grant.sid,
                orjson.dumps(grant.claims).decode(),
                now,
                token_hash,
                expires_at,
            )
        )

    async def _issue_many(self, rows: list[_IssueRow]) -> list[bool]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        async with self._db.connection() as conn:
            try:
                records = await conn.fetch(_ISSUE_MANY, *columns)
            except asyncpg.ForeignKeyViolationError:
                if len(rows) == 1:
                    return [False]
                # A client was removed meanwhile: find its rows one by one, keep the others.
                return [(await self._issue_many([row]))[0] for row in rows]
        live = {r["grant_id"]: r["live"] for r in records}
        return [bool(live.get(row[0], False)) for row in rows]

    async def _states_many(self, hashes: list[bytes]) -> list[asyncpg.Record | None]:
        async with self._db.connection() as conn:
            records = await conn.fetch(_TOKEN_STATES, hashes)
        found = {bytes(r["token_hash"]): r for r in records}
        return [found.get(h) for h in hashes]

    async def _rotate_many(self, rows: list[_RotateRow]) -> list[bool]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        async with self._db.connection() as conn:
            records = await conn.fetch(_ROTATE_MANY, *columns)
        winners = {bytes(r["token_hash"]) for r in records}
        return [row[3] in winners for row in rows]

    async def rotate(
        self, token_hash: bytes, now: float, grace: float, successor: SuccessorFactory
    ) -> RotateOutcome:
        row = await self._state(token_hash)
        decided = await self._settled(row, now, grace)
        if decided is not None:
            return decided
        assert row is not None
        state = RefreshState(
            token_hash=token_hash,
            grant=_grant(row["grant_id"], row),
            expires_at=row["expires_at"].timestamp(),
            retired_at=None,
            successor_box=None,
            revoked=False,
        )
        new = successor(state)  # may raise: nothing has been written
        won = await self._rotations.submit(
            (token_hash, now, new.sealed_response, new.token_hash, new.expires_at)
        )
        if won:
            return Rotated(state)
        # Lost a race (or the grant was revoked meanwhile): answer as for the row as it is now.
        decided = await self._settled(await self._state(token_hash), now, grace)
        return decided if decided is not None else Rejected()

    async def grant(self, grant_id: str) -> Grant | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_LIVE_GRANT, grant_id)
        return None if row is None else _grant(grant_id, row)

    async def inspect(self, token_hash: bytes) -> RefreshState | None:
        row = await self._state(token_hash)
        if row is None or row["client_id"] is None:
            return None
        return RefreshState(
            token_hash=token_hash,
            grant=_grant(row["grant_id"], row),
            expires_at=row["expires_at"].timestamp(),
            retired_at=_epoch(row["retired_at"]),
            successor_box=row["successor_box"],
            revoked=row["revoked"],
        )

    async def _state(self, token_hash: bytes) -> asyncpg.Record | None:
        return await self._states.submit(token_hash)

    async def _settled(
        self, row: asyncpg.Record | None, now: float, grace: float
    ) -> RotateOutcome | None:
        """The outcome for a token that is not live, or None when it is live."""
        if row is None or row["revoked"] or row["expires_at"].timestamp() <= now:
            return Rejected()
        retired_at = _epoch(row["retired_at"])
        if retired_at is None:
            return None
        box = row["successor_box"]
        # `grace > 0` explicitly: a racing caller whose clock reads slightly before the
        # winner's must not get a repeat when repeats are switched off.
        if grace > 0 and now - retired_at < grace and box is not None:
            return Repeated(box)
        await self.revoke_grant(row["grant_id"], now)
        return Rejected(reused=True)

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_REVOKE, grant_id, _ts(now))

    async def count_tokens(self, grant_id: str) -> int:
        """For tests: how many refresh-token rows a family holds, retired and revoked ones
        included. Async, unlike `MemoryGrants.count_tokens`."""
        async with self._db.connection() as conn:
            count: int = await conn.fetchval(_COUNT_TOKENS, grant_id)
        return count
