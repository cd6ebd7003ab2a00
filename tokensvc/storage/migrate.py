"""Versioned SQL migrations: `schema/NNNN_name.sql`, applied in order, each exactly once.

Each file runs in its own transaction together with the row recording it in
`schema_migrations`, so a failed migration leaves nothing half-applied and is retried on the
next run. A session-level advisory lock serialises concurrent runs (two Kubernetes Jobs, or a
Job and an operator): the second waits, then finds everything applied and does nothing.

Because every file runs inside a transaction, a migration cannot use statements that refuse
one (`CREATE INDEX CONCURRENTLY`, `ALTER TYPE ... ADD VALUE` before PG 12).

The session lock is also why migrations talk to Postgres directly: behind a PgBouncer in
transaction mode the lock would stay with whichever server connection took it. A URL marked
`?pgbouncer=true` is refused by `migrate`; `pending` (read-only) accepts it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import asyncpg

from tokensvc.config import ConfigError
from tokensvc.errors import StoreUnavailable
from tokensvc.storage.postgres import split_pgbouncer

# pg_advisory_lock key shared by every `tokensvc migrate`: an arbitrary fixed bigint that other
# applications sharing the database are unlikely to pick.
LOCK_KEY = 0x746F_6B65_6E73_7663  # b"tokensvc"
CONNECT_TIMEOUT = 10.0

_FILE = re.compile(r"(\d{4})_[A-Za-z0-9_]+\.sql")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())"

_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)
# Server errors that mean "the connection or server went away", not "this SQL is wrong".
_CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)


class MigrationFailed(Exception):
    """A migration file was rejected by the server (bad SQL, a constraint the data breaks).
    Its transaction was rolled back; the files before it stay applied."""

    def __init__(self, version: str, cause: BaseException) -> None:
        self.version = version
        super().__init__(f"migration {version} failed: {cause}")


def default_schema_dir() -> Path:
    """The migrations directory: top-level `schema/` of a source checkout (the parent of the
    `tokensvc/` package), else a copy shipped inside the package as `tokensvc/schema/`."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "schema", package / "schema"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no migrations directory: looked for {package.parent / 'schema'} and "
        f"{package / 'schema'}; pass schema_dir"
    )


def migration_files(schema_dir: Path) -> list[tuple[str, Path]]:
    """`(version, path)` for every migration file, in order. The version is the file's stem
    (`0001_initial`). Two files with one number are an error, not an ordering accident."""
    found: dict[str, tuple[str, Path]] = {}
    for path in sorted(schema_dir.iterdir()):
        match = _FILE.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        number = match.group(1)
        if number in found:
            raise ValueError(
                f"two migrations numbered {number}: {found[number][1].name}, {path.name}"
            )
        found[number] = (path.stem, path)
    return [found[n] for n in sorted(found)]


async def migrate(
    dsn: str,
    schema_dir: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> list[str]:
    """Apply the migrations not yet applied to `dsn`; return their versions (`[]` when the
    database is current). Safe to run concurrently and repeatedly. Driver and network failures
    raise `StoreUnavailable("postgres", ...)`; SQL the server rejects raises `MigrationFailed`
    after rolling that file back (earlier files stay applied)."""
    files = migration_files(schema_dir or default_schema_dir())
    dsn, pgbouncer = split_pgbouncer(dsn)
    if pgbouncer:
        raise ConfigError(
            "migrations hold a session lock, which a PgBouncer in transaction mode cannot "
            "keep: run `tokensvc migrate` with TOKENSVC_DATABASE_URL pointing at Postgres itself"
        )
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except _DRIVER_ERRORS as exc:
        raise StoreUnavailable("postgres", exc) from exc
    applied: list[str] = []
    try:
        # Session lock: held across the per-file transactions, released on unlock or disconnect.
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        await conn.execute(_CREATE_LEDGER)
        done = {row["version"] for row in await conn.fetch(_APPLIED)}
        for version, path in files:
            if version in done:
                continue
            progress(f"applying {version}")
            sql = path.read_text(encoding="utf-8")
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(_RECORD, version)
            except _CONNECTION_LOST:
                raise
            except asyncpg.PostgresError as exc:
                raise MigrationFailed(version, exc) from exc
            applied.append(version)
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    except _DRIVER_ERRORS as exc:
        raise StoreUnavailable("postgres", exc) from exc
    finally:
        await _close(conn)
    return applied


async def pending(dsn: str, schema_dir: Path | None = None) -> list[str]:
    """The versions `migrate` would apply to `dsn` now, without applying them (for
    `tokensvc migrate --check`: a pod waits until its schema is in place)."""
    files = migration_files(schema_dir or default_schema_dir())
    dsn, pgbouncer = split_pgbouncer(dsn)
    try:
        conn = await asyncpg.connect(
            dsn, timeout=CONNECT_TIMEOUT, statement_cache_size=0 if pgbouncer else 100
        )
    except _DRIVER_ERRORS as exc:
        raise StoreUnavailable("postgres", exc) from exc
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            done: set[str] = set()
        else:
            done = {row["version"] for row in await conn.fetch(_APPLIED)}
    except _DRIVER_ERRORS as exc:
        raise StoreUnavailable("postgres", exc) from exc
    finally:
        await _close(conn)
    return [version for version, _ in files if version not in done]


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=CONNECT_TIMEOUT)
    except _DRIVER_ERRORS:
        conn.terminate()
