"""The change feed against real Postgres (schema/0009 and `storage.postgres.changes`): every
writer of clients, resources and federations is announced, a change committed while the
feed's connection was cut is applied when it reconnects (exactly, without a reset), and what
it cannot know (no baseline, a purged gap, seq gone backwards) resets every cache.

The feed is observed through a subscription to its hub: each change it applies, and each
reset, arrives there as it does for the internal API's change stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.contract.backends import NOW
from tokensvc.models import Client, Federation
from tokensvc.registration import new_resource
from tokensvc.storage.changes import Change, ChangeHub, Subscription
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.postgres.changes import APPLICATION_NAME, PostgresChangeFeed

WITHIN = 1.0  # seconds: SPEC's bound, for every change announced while connected
RESET = Change("reset")


class Followed:
    """A feed on the module's database, and what it applied, in order."""

    def __init__(self, feed: PostgresChangeFeed, seen: Subscription) -> None:
        self.feed = feed
        self.seen = seen
        self.log: list[Change] = []

    async def expect(self, *wanted: Change, within: float = WITHIN) -> list[Change]:
        """Wait until every one of `wanted` arrived; everything that arrived meanwhile."""
        start = len(self.log)
        try:
            async with asyncio.timeout(within):
                while not set(wanted) <= set(self.log[start:]):
                    self.log += await self.seen.next(within)
        except TimeoutError:
            pytest.fail(f"not within {within}s: {wanted}; saw {self.log[start:]}")
        return self.log[start:]

    async def quiet(self, for_seconds: float = 0.3) -> list[Change]:
        """What arrives in the next `for_seconds`."""
        start = len(self.log)
        async with asyncio.timeout(for_seconds + 1):
            self.log += await self.seen.next(for_seconds)
        return self.log[start:]


async def follow(url: str, **options: float | tuple[float, float]) -> AsyncIterator[Followed]:
    hub = ChangeHub()
    feed = PostgresChangeFeed(url, hub, **options)  # type: ignore[arg-type]
    with hub.subscribe() as seen:
        followed = Followed(feed, seen)
        feed.start()
        try:
            await followed.expect(RESET, within=5)  # its first start: no baseline
            assert feed.syncs == 1 and hub.connected
            yield followed
        finally:
            await feed.close()
    assert not hub.connected


@pytest.fixture
async def followed(postgres: Postgres, contract_database_url: str) -> AsyncIterator[Followed]:
    # The pool's fixture truncated the tables first: that is in the feed before it starts.
    async for f in follow(contract_database_url, check_interval=0.2, backoff=(0.3, 0.3)):
        yield f


async def execute(db: Postgres, sql: str, *args: object) -> str:
    async with db.connection() as conn:
        status: str = await conn.execute(sql, *args)
        return status


async def cut(db: Postgres) -> None:
    """Terminate the feed's backend, as a failover or an idle-connection killer would."""
    async with db.connection() as conn:
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
    assert cut == 1


def client(client_id: str) -> Client:
    return Client(client_id, "App", "none", frozenset({"authorization_code"}), created_at=NOW)


async def test_every_writer_of_the_three_tables_is_announced(
    postgres: Postgres, followed: Followed
) -> None:
    await postgres.clients.add(client("web"))
    await followed.expect(Change("client", "web"))
    # Any UPDATE, whoever runs it (0010's secret rotation, an operator in psql).
    await execute(postgres, "UPDATE clients SET scopes = '{openid}' WHERE client_id = 'web'")
    await followed.expect(Change("client", "web"))
    await execute(postgres, "UPDATE clients SET client_id = 'web2' WHERE client_id = 'web'")
    await followed.expect(Change("client", "web"), Change("client", "web2"))
    await postgres.clients.remove("web2")
    await followed.expect(Change("client", "web2"))

    api = "https://api.example.com"
    await postgres.resources.add(new_resource(identifier=api, scopes=["api:read"]))
    await followed.expect(Change("resource", api))
    await postgres.resources.remove(api)
    await followed.expect(Change("resource", api))
    issuer = "https://ci.example"
    await postgres.federations.add(Federation(issuer, jwks_uri=f"{issuer}/jwks", created_at=NOW))
    await followed.expect(Change("federation", issuer))

    # A TRUNCATE names no row: every cache goes.
    await execute(postgres, "TRUNCATE federations")
    await followed.expect(RESET)
    # Rolled back: nothing to announce (its seq is a gap for good).
    async with postgres.connection() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("DELETE FROM clients")
        await conn.execute(
            "INSERT INTO clients (client_id, name, auth_method) VALUES ('x', 'X', 'none')"
        )
        await transaction.rollback()
    assert await followed.quiet() == []
    # The same row changed by one statement of many rows: one change per row.
    await postgres.clients.add(client("a")), await postgres.clients.add(client("b"))
    await followed.expect(Change("client", "a"), Change("client", "b"))
    await execute(postgres, "UPDATE clients SET name = 'renamed'")
    assert sorted(await followed.expect(Change("client", "a"), Change("client", "b"))) == [
        Change("client", "a"),
        Change("client", "b"),
    ]


async def test_a_key_too_long_for_a_notification_is_read_from_the_feed(
    postgres: Postgres, followed: Followed
) -> None:
    long_id = "\U0001f511" * 2048  # 2048 characters, 8192 bytes: more than NOTIFY carries
    await execute(
        postgres,
        "INSERT INTO clients (client_id, name, auth_method) VALUES ($1, 'Long', 'none')",
        long_id,
    )
    await followed.expect(Change("client", long_id))


async def test_a_change_committed_while_cut_off_is_applied_on_reconnecting(
    postgres: Postgres, followed: Followed
) -> None:
    await postgres.clients.add(client("kept")), await postgres.clients.add(client("gone"))
    await followed.expect(Change("client", "kept"), Change("client", "gone"))
    await cut(postgres)
    # Committed before the feed is back (its backoff is 0.3 s): no listener hears it.
    await postgres.clients.remove("gone")
    await execute(postgres, "UPDATE clients SET name = 'x' WHERE client_id = 'kept'")
    seen = await followed.expect(Change("client", "gone"), Change("client", "kept"), within=3)
    assert followed.feed.syncs == 2
    assert RESET not in seen  # it knew exactly what it missed


async def test_a_change_whose_notification_was_lost_is_caught_by_the_check(
    postgres: Postgres, followed: Followed
) -> None:
    # A row nobody announced (as if its notification were lost): the 0.2 s check finds it.
    await execute(postgres, "INSERT INTO changes (kind, key) VALUES ('client', 'quiet')")
    await followed.expect(Change("client", "quiet"))
    assert followed.feed.syncs == 1


async def test_a_purged_gap_resets_every_cache(postgres: Postgres, followed: Followed) -> None:
    await postgres.clients.add(client("a"))
    await followed.expect(Change("client", "a"))
    await cut(postgres)
    await postgres.clients.add(client("b")), await postgres.clients.add(client("c"))
    # Purged past what the feed saw: "b" is gone from the feed, only "c" is left.
    await execute(postgres, "DELETE FROM changes WHERE seq < (SELECT max(seq) FROM changes)")
    seen = await followed.expect(RESET, within=3)
    assert Change("client", "b") not in seen
    assert followed.feed.syncs == 2


async def test_seq_going_backwards_resets_every_cache(
    postgres: Postgres, followed: Followed
) -> None:
    for name in ("a", "b", "c"):
        await postgres.clients.add(client(name))
    await followed.expect(Change("client", "c"))
    last = followed.feed.last
    assert last is not None
    await cut(postgres)
    # A restored backup: the feed (and the sequence) from before those changes.
    await execute(postgres, "DELETE FROM changes WHERE seq > $1", last - 2)
    await execute(postgres, "SELECT setval('changes_seq_seq', $1)", last - 2)
    await followed.expect(RESET, within=3)
    assert followed.feed.last == last - 2
    # and it follows the restored database from there
    await postgres.clients.add(client("d"))
    await followed.expect(Change("client", "d"))


async def test_writers_commit_in_the_order_of_their_seqs(
    postgres: Postgres, contract_database_url: str
) -> None:
    """The advisory lock of 0009: a second writer of the three tables waits for the first to
    commit, so no seq can commit after a greater one was read."""
    await postgres.clients.add(client("a"))
    first = await asyncpg.connect(contract_database_url)
    second = await asyncpg.connect(contract_database_url)
    try:
        transaction = first.transaction()
        await transaction.start()
        await first.execute("UPDATE clients SET name = 'first' WHERE client_id = 'a'")
        await second.execute("SET lock_timeout = '200ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            await second.execute(
                "INSERT INTO resources (identifier, scopes) VALUES ('https://r.example', '{x}')"
            )
        await transaction.commit()
        await second.execute(
            "INSERT INTO resources (identifier, scopes) VALUES ('https://r.example', '{x}')"
        )
        rows = await second.fetch("SELECT kind, key FROM changes ORDER BY seq DESC LIMIT 2")
        assert [(r["kind"], r["key"]) for r in rows] == [
            ("resource", "https://r.example"),
            ("client", "a"),
        ]
    finally:
        await first.close()
        await second.close()


async def test_the_feed_retries_until_the_database_answers(closed_port: int) -> None:
    """Nothing listens: the feed keeps trying quietly, and closes at once."""
    hub = ChangeHub()
    feed = PostgresChangeFeed(
        f"postgresql://nobody@127.0.0.1:{closed_port}/none", hub, backoff=(0.05, 0.1)
    )
    feed.start()
    await asyncio.sleep(0.5)
    assert not hub.connected and feed.syncs == 0
    async with asyncio.timeout(1):
        await feed.close()
