"""What the Postgres backend promises beyond the shared contract: no plaintext at rest, a real
row-lock race settled by the rotation statement, refusal for a vanished client, and recovery
after a server restart without rebuilding the pool."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import orjson
import pytest

from tests.contract.backends import NOW
from tests.contract.conftest import count_rows
from tests.servers import PostgresServer
from tokensvc.errors import StoreUnavailable
from tokensvc.grants.rotation import Rejected, Repeated, Rotated, rotate
from tokensvc.models import Client, Grant, RefreshState, Successor, User
from tokensvc.opaque import hash_secret, lookup_hash, new_value, seal
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres

TTL = 3600.0


def a_client(client_id: str = "client-1", secret_hash: str | None = None) -> Client:
    return Client(
        client_id=client_id,
        name="App",
        auth_method="client_secret_basic",
        grant_types=frozenset({"authorization_code", "refresh_token"}),
        redirect_uris=("https://app.example/cb",),
        scopes=frozenset({"openid"}),
        secret_hash=secret_hash,
        created_at=NOW,
    )


def a_grant(grant_id: str = "grant-1", client_id: str = "client-1") -> Grant:
    return Grant(grant_id, client_id, "user-1", "openid offline_access", int(NOW))


class Factory:
    def __init__(self, name: str) -> None:
        self.token_hash = lookup_hash(name)
        self.box = f"box {name}".encode()
        self.seen: list[RefreshState] = []

    def __call__(self, state: RefreshState) -> Successor:
        self.seen.append(state)
        return Successor(self.token_hash, NOW + 2 * TTL, self.box)


async def columns_containing(conn: asyncpg.Connection, needle: str) -> list[str]:
    """Every `table.column` in the public schema whose text form contains `needle` (bytea
    renders as `\\x<hex>`, arrays and jsonb as their literals)."""
    cols = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    )
    assert len(cols) > 30  # every table of the schema is scanned
    hits = []
    for col in cols:
        table, column = col["table_name"], col["column_name"]
        query = f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, $1) > 0'  # noqa: S608
        if await conn.fetchval(query, needle):
            hits.append(f"{table}.{column}")
    return hits


async def test_no_plaintext_credentials_at_rest(postgres: Postgres) -> None:
    secret = new_value(32)
    token = new_value(32)
    successor_token = new_value(32)
    await postgres.clients.add(a_client(secret_hash=hash_secret(secret)))
    await postgres.users.add(User("user-1", "alice", "$argon2id$v=19$m=65536,t=3,p=4$x$y"))
    token_hash = lookup_hash(token)
    assert await postgres.grants.issue(a_grant(), token_hash, NOW + TTL, NOW)

    # The successor response as the refresh grant would seal it: it holds the new token.
    response = orjson.dumps({"refresh_token": successor_token, "token_type": "Bearer"})
    successor_hash = lookup_hash(successor_token)

    def successor(state: RefreshState) -> Successor:
        return Successor(successor_hash, NOW + TTL, seal(token, token_hash, response))

    assert isinstance(await rotate(postgres.grants, token_hash, NOW + 1, 5, successor), Rotated)

    async with postgres.connection() as conn:
        for value in (secret, token, successor_token):
            assert await columns_containing(conn, value) == []
            assert await columns_containing(conn, value.encode().hex()) == []
        # The scan does find what is there: both tokens by their SHA-256.
        assert await columns_containing(conn, token_hash.hex()) == ["refresh_tokens.token_hash"]
        assert await columns_containing(conn, successor_hash.hex()) == ["refresh_tokens.token_hash"]


async def test_rotation_race_on_a_locked_row_creates_one_successor(
    postgres: Postgres, contract_database_url: str
) -> None:
    """All 30 callers read the live token and build a successor before any can write: their
    rotations queue on the row lock (in one batched statement or several), and the statement's
    re-check and its one-input-row-per-target join let exactly one through."""
    await postgres.clients.add(a_client())
    t0 = lookup_hash("rt-0")
    assert await postgres.grants.issue(a_grant(), t0, NOW + TTL, NOW)

    locker = await asyncpg.connect(contract_database_url)
    # Outside the locker's transaction, which would see one cached pg_stat_activity snapshot.
    observer = await asyncpg.connect(contract_database_url)
    try:
        holding = locker.transaction()
        await holding.start()
        await locker.execute("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", t0)
        factories = [Factory(f"rt-succ-{i}") for i in range(30)]
        tasks = [asyncio.create_task(rotate(postgres.grants, t0, NOW + 1, 5, f)) for f in factories]
        deadline = time.monotonic() + 4
        waiting = 0
        while (waiting < 1 or not all(f.seen for f in factories)) and (time.monotonic() < deadline):
            await asyncio.sleep(0.02)
            waiting = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        assert waiting >= 1  # the rotation statement(s) wait on the locked row
        assert all(len(f.seen) == 1 for f in factories)
        await holding.rollback()
        outcomes = await asyncio.gather(*tasks)
    finally:
        await locker.close()
        await observer.close()

    winners = [i for i, o in enumerate(outcomes) if isinstance(o, Rotated)]
    assert len(winners) == 1
    assert [o for o in outcomes if not isinstance(o, Rotated)] == [
        Repeated(factories[winners[0]].box)
    ] * 29
    assert await count_rows(postgres, "grant-1") == 2


async def test_zero_grace_never_repeats_even_for_a_caller_with_an_earlier_clock(
    postgres: Postgres,
) -> None:
    await postgres.clients.add(a_client())
    t0 = lookup_hash("rt-0")
    assert await postgres.grants.issue(a_grant(), t0, NOW + TTL, NOW)
    assert isinstance(await rotate(postgres.grants, t0, NOW + 1, 0, Factory("rt-1")), Rotated)
    # A racing request stamped a little before the winner's `now`.
    assert await rotate(postgres.grants, t0, NOW + 0.5, 0, Factory("x")) == Rejected(reused=True)


async def test_issue_for_a_vanished_client_stores_nothing(postgres: Postgres) -> None:
    assert await postgres.grants.issue(a_grant(client_id="gone"), lookup_hash("t"), NOW, NOW) is (
        False
    )
    assert await count_rows(postgres, "grant-1") == 0


async def test_revocation_keeps_rows_for_reuse_detection(postgres: Postgres) -> None:
    await postgres.clients.add(a_client())
    t0 = lookup_hash("rt-0")
    assert await postgres.grants.issue(a_grant(), t0, NOW + TTL, NOW)
    assert isinstance(await rotate(postgres.grants, t0, NOW + 1, 5, Factory("rt-1")), Rotated)
    assert await rotate(postgres.grants, t0, NOW + 10, 5, Factory("x")) == Rejected(reused=True)
    assert await count_rows(postgres, "grant-1") == 2
    async with postgres.connection() as conn:
        revoked_at = await conn.fetchval("SELECT revoked_at FROM grants WHERE grant_id = 'grant-1'")
        # A second revocation keeps the first time.
        await postgres.grants.revoke_grant("grant-1", NOW + 99)
        again = await conn.fetchval("SELECT revoked_at FROM grants WHERE grant_id = 'grant-1'")
    assert revoked_at.timestamp() == NOW + 10
    assert again == revoked_at


async def test_pool_recovers_after_a_server_restart() -> None:
    with PostgresServer() as server:
        await migrate(server.url)
        db = await Postgres.connect(server.url, min_size=2)
        try:
            client = a_client()
            assert await db.clients.add(client)

            await asyncio.to_thread(server.stop)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await db.clients.get("client-1")
            with pytest.raises(StoreUnavailable):
                await db.ping()
            assert time.monotonic() - started < 2  # a quick 503, not a hang

            await asyncio.to_thread(server.start)
            # The same pool serves again: broken connections were replaced, data is durable.
            assert await db.clients.get("client-1") == client
            await db.ping()
        finally:
            await db.close()


async def test_pool_recovers_when_restarted_between_two_calls() -> None:
    """The pool's idle connections die with the server; the first call afterwards works."""
    with PostgresServer() as server:
        await migrate(server.url)
        db = await Postgres.connect(server.url, min_size=2)
        try:
            await db.ping()
            await asyncio.to_thread(server.restart)
            await db.ping()
            assert await db.clients.list() == []
        finally:
            await db.close()


async def test_issue_completes_a_tombstone_but_keeps_it_revoked(postgres: Postgres) -> None:
    await postgres.clients.add(a_client())
    await postgres.grants.revoke_grant("grant-1", NOW)
    assert await postgres.grants.issue(a_grant(), lookup_hash("rt-0"), NOW + TTL, NOW + 1) is False
    async with postgres.connection() as conn:
        row = await conn.fetchrow("SELECT client_id, sub, revoked_at FROM grants")
    assert (row["client_id"], row["sub"], row["revoked_at"].timestamp()) == (
        "client-1",
        "user-1",
        NOW,
    )
