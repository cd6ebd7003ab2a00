"""`tokensvc serve token` behind a PgBouncer in transaction mode (issue 7): with
`TOKENSVC_DATABASE_URL=...?pgbouncer=true`, concurrent code exchanges and refresh races go
through two server connections shared by all of the service's client connections, without an
error and with rotation's guarantee intact (of concurrent refreshes of one token exactly one
wins), and no named prepared statement is left on the server connections. Without the flag the
same load fails, and the named statements show: the checks can fail.

The operator commands go through PgBouncer as well, except `migrate`, which must not. The
change feed polls instead of listening, and a change is still in force within 1 s.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.e2e.procs import (
    Proc,
    add_machine_client,
    add_web_client,
    base_env,
    basic,
    http,
    migrated_database,
    query,
    run,
    service_env,
    write_keys,
)
from tests.e2e.test_shutdown import REDIRECT_URI, Burst
from tests.pgbouncer import PgBouncerServer

POOL_SIZE = 2  # server connections PgBouncer keeps per database
EXCHANGES = 40
RACES = 20  # of the families issued, these get four concurrent refreshes of one token
CHAIN = 4  # the others refresh this many times in a row, all families at once


@pytest.fixture(scope="module")
def bouncer(postgres_admin_url: str) -> Iterator[PgBouncerServer]:
    with PgBouncerServer(postgres_admin_url, pool_size=POOL_SIZE) as server:
        yield server


def flagged(url: str) -> str:
    return f"{url}?pgbouncer=true"


async def service_burst(
    bouncer: PgBouncerServer, db_url: str, direct_db: str, tmp_path: Path
) -> dict[str, Any]:
    """Start the token service on `db_url`, register a client, drive the load: what the
    clients saw, and how many client connections PgBouncer had from the service then."""
    client = add_web_client(
        base_env(TOKENSVC_DATABASE_URL=direct_db), "Bounced", REDIRECT_URI, "openid api:read"
    )
    keys_file = write_keys(tmp_path)
    env = service_env(
        keys_file, TOKENSVC_DATABASE_URL=db_url, TOKENSVC_REFRESH_GRACE="0", TOKENSVC_CODE_TTL="300"
    )
    burst = Burst(client, env, tmp_path, direct_db)
    service = await burst.start(drain="0")
    try:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=100),
                    timeout=aiohttp.ClientTimeout(total=30),
                )
            )
            seen = await load(burst, http)
        seen["clients"] = await asyncio.to_thread(clients_of, bouncer, direct_db)
        return seen
    finally:
        service.kill()


async def load(burst: Burst, http: aiohttp.ClientSession) -> dict[str, Any]:
    # Burst.mint asserts a 201: a failure comes back as its AssertionError.
    minted = await asyncio.gather(
        *(burst.mint(http) for _ in range(EXCHANGES)), return_exceptions=True
    )
    codes = [code for code in minted if not isinstance(code, BaseException)]
    exchanged = await asyncio.gather(
        *(burst.post(http, "authorization_code", code) for code in codes)
    )
    tokens = [body["refresh_token"] for status, body in exchanged if status == 200]

    async def race(token: str) -> list[tuple[int, Any]]:
        return list(
            await asyncio.gather(*(burst.post(http, "refresh_token", token) for _ in range(4)))
        )

    async def chain(token: str) -> list[tuple[int, Any]]:
        seen = []
        for _ in range(CHAIN):
            status, body = await burst.post(http, "refresh_token", token)
            seen.append((status, body))
            if status != 200:
                break
            token = body["refresh_token"]
        return seen

    outcomes = await asyncio.gather(
        *(race(t) for t in tokens[:RACES]), *(chain(t) for t in tokens[RACES:])
    )
    return {
        "mint_failures": [str(m) for m in minted if isinstance(m, BaseException)],
        "exchanged": exchanged,
        "races": outcomes[:RACES],
        "chains": outcomes[RACES:],
    }


async def server_sessions(bouncer: PgBouncerServer, database_url: str) -> list[dict[str, Any]]:
    """What each of the pool's server connections holds: two clients each inside a transaction
    occupy one server connection each, and read its session (unnamed statements only)."""
    url = bouncer.via(database_url)
    conns = [await asyncpg.connect(url, statement_cache_size=0) for _ in range(POOL_SIZE)]
    try:
        transactions = [conn.transaction() for conn in conns]
        for transaction in transactions:
            await transaction.start()
        seen = []
        for conn in conns:
            row = await conn.fetchrow(
                "SELECT pg_backend_pid() AS pid, current_setting('jit') AS jit, "
                "ARRAY(SELECT name FROM pg_prepared_statements ORDER BY name) AS statements"
            )
            seen.append(dict(row))
        for transaction in transactions:
            await transaction.rollback()
        return seen
    finally:
        for conn in conns:
            await conn.close()


def server_backends(direct_db: str) -> int:
    """Postgres backends connected to the database, other than the one asking."""
    return query(
        direct_db,
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )[0]["n"]


def clients_of(bouncer: PgBouncerServer, direct_db: str) -> int:
    database = direct_db.rsplit("/", 1)[1]
    return sum(1 for c in bouncer.admin("SHOW CLIENTS") if c["database"] == database)


async def test_token_service_behind_pgbouncer_in_transaction_mode(
    bouncer: PgBouncerServer, postgres_admin_url: str, tmp_path: Path
) -> None:
    with migrated_database(postgres_admin_url) as db:
        via = flagged(bouncer.via(db))
        # The operator commands work through PgBouncer; migrate refuses it, in one line.
        assert run(["migrate", "--check"], base_env(TOKENSVC_DATABASE_URL=via)).ok()
        line = run(["migrate"], base_env(TOKENSVC_DATABASE_URL=via)).bad_input()
        assert "Postgres itself" in line

        seen = await service_burst(bouncer, via, db, tmp_path)

        assert seen["mint_failures"] == []
        assert [status for status, _ in seen["exchanged"]] == [200] * EXCHANGES
        for outcomes in seen["races"]:  # exactly one winner; the repeats are reuse
            statuses = sorted(status for status, _ in outcomes)
            assert statuses == [200, 400, 400, 400], outcomes
            assert all(body["error"] == "invalid_grant" for s, body in outcomes if s == 400)
        for outcomes in seen["chains"]:
            assert [status for status, _ in outcomes] == [200] * CHAIN, outcomes
        # Every family raced is revoked, every chained one has its full history, in Postgres.
        families = query(
            db,
            "SELECT g.revoked_at IS NOT NULL AS revoked, count(*) AS tokens "
            "FROM grants g JOIN refresh_tokens t USING (grant_id) "
            "GROUP BY g.grant_id",
        )
        assert sorted((f["revoked"], f["tokens"]) for f in families) == sorted(
            [(True, 2)] * RACES + [(False, CHAIN + 1)] * (EXCHANGES - RACES)
        )

        # Two server connections served all the service's client connections, and hold no
        # named statement (nor a session setting changed).
        assert seen["clients"] > POOL_SIZE
        assert server_backends(db) <= POOL_SIZE
        sessions = await server_sessions(bouncer, db)
        assert len({s["pid"] for s in sessions}) == POOL_SIZE
        assert [s["statements"] for s in sessions] == [[]] * POOL_SIZE
        assert [s["jit"] for s in sessions] == ["on"] * POOL_SIZE

        purged = run(["purge", "--batch-size", "5"], base_env(TOKENSVC_DATABASE_URL=via)).ok()
        assert purged.json()["complete"] is True


async def test_without_the_flag_the_same_load_fails(
    bouncer: PgBouncerServer, postgres_admin_url: str, tmp_path: Path
) -> None:
    """The negative control: asyncpg's named statements meet the other server connection."""
    with migrated_database(postgres_admin_url) as db:
        seen = await service_burst(bouncer, bouncer.via(db), db, tmp_path)
        assert seen["clients"] > POOL_SIZE
        statuses = [status for status, _ in seen["exchanged"]]
        statuses += [
            status for outcomes in seen["races"] + seen["chains"] for status, _ in outcomes
        ]
        failures = seen["mint_failures"] + [s for s in statuses if s == 503]
        assert failures, "the same load passed without ?pgbouncer=true"
        assert all(s in (200, 400, 503) for s in statuses), statuses
        sessions = await server_sessions(bouncer, db)
        leaked = [name for s in sessions for name in s["statements"]]
        assert leaked and all(name.startswith("__asyncpg_stmt_") for name in leaked)


def test_changes_propagate_by_polling_behind_pgbouncer(
    bouncer: PgBouncerServer, postgres_admin_url: str, tmp_path: Path
) -> None:
    """LISTEN cannot work through transaction pooling: the change feed polls (every 0.25 s)
    instead, and a client removed through PgBouncer is refused within 1 s all the same."""
    with migrated_database(postgres_admin_url) as db:
        via = flagged(bouncer.via(db))
        env = base_env(TOKENSVC_DATABASE_URL=via)
        client = add_machine_client(env)
        polled_env = service_env(write_keys(tmp_path), TOKENSVC_DATABASE_URL=via)
        base = polled_env["TOKENSVC_ISSUER"]
        service = Proc(["serve", "token"], polled_env, tmp_path, "polled")
        try:
            service.wait_http(f"{base}/healthz")
            service.wait_stdout(
                re.compile(r'^(?=.*"mode": ?"poll")(?=.*change feed following)', re.M)
            )

            def token() -> int:
                form = {"grant_type": "client_credentials"}
                headers = basic(client["client_id"], client["client_secret"])
                return http(f"{base}/token", data=form, headers=headers).status

            assert token() == 200  # cached from now on (TOKENSVC_CLIENT_CACHE_TTL: 30 s)
            run(["client", "remove", client["client_id"]], env).ok()
            removed = time.monotonic()
            while (status := token()) == 200 and time.monotonic() - removed < 10:
                time.sleep(0.05)
            took = time.monotonic() - removed
            assert status == 401 and took < 1.0, (status, took)
            assert server_backends(db) <= POOL_SIZE  # the poller holds no server connection
        finally:
            service.kill()
