"""`purge` (tokensvc.storage.purge) against real Postgres: what past its retention goes, what a
guarantee still needs stays, batches stay bounded, and rotations racing it lose nothing.

Time is the contract suite's: stores and purge take `now` from the caller (NOW and offsets).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from tests.contract.backends import NOW
from tests.contract.conftest import count_rows
from tokensvc.grants.rotation import Rejected, Rotated, rotate
from tokensvc.models import Client, Grant, RefreshState, Successor
from tokensvc.opaque import lookup_hash
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.postgres.pool import to_timestamp
from tokensvc.storage.purge import CHANGES_KEPT, PurgeReport, Retention, purge

TTL = 3600.0  # refresh tokens
RETENTION = Retention(access_token_ttl=600, refresh_token_ttl=TTL, code_ttl=60, margin=300)
# As of NOW: rows that expired before NOW - 300 go; grants without rows created before
# NOW - 900 go, revoked ones only if revoked before NOW - 360.
HOUR = 3600.0


async def add_client(db: Postgres) -> None:
    await db.clients.add(Client("client-1", "App", "none", frozenset({"refresh_token"})))


def grant(grant_id: str) -> Grant:
    return Grant(grant_id, "client-1", "user-1", "openid offline_access", int(NOW - 4 * HOUR))


class Next:
    """Successor factory: the token `name`, expiring TTL after the rotation."""

    def __init__(self, name: str, now: float) -> None:
        self.token_hash = lookup_hash(name)
        self.now = now

    def __call__(self, state: RefreshState) -> Successor:
        return Successor(self.token_hash, self.now + TTL, b"sealed " + self.token_hash)


async def family(db: Postgres, grant_id: str, times: Sequence[float]) -> list[bytes]:
    """A grant issued at `times[0]` and rotated at each later time (every token expires TTL
    after it was minted); the hashes of its tokens, oldest first, the last one live."""
    hashes = [lookup_hash(f"{grant_id}-0")]
    assert await db.grants.issue(grant(grant_id), hashes[0], times[0] + TTL, times[0])
    for i, at in enumerate(times[1:], 1):
        factory = Next(f"{grant_id}-{i}", at)
        assert isinstance(await rotate(db.grants, hashes[-1], at, 0, factory), Rotated)
        hashes.append(factory.token_hash)
    return hashes


async def access_only(db: Postgres, grant_id: str, at: float) -> None:
    """A grant issued without a refresh token: one access token, minted at `at`."""
    assert await db.grants.issue(grant(grant_id), None, 0.0, at)


async def present(db: Postgres, grant_ids: Sequence[str]) -> set[str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT grant_id FROM grants WHERE grant_id = ANY($1)", grant_ids)
    return {row["grant_id"] for row in rows}


async def stored(db: Postgres, hashes: Sequence[bytes]) -> set[bytes]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT token_hash FROM refresh_tokens WHERE token_hash = ANY($1)", hashes
        )
    return {bytes(row["token_hash"]) for row in rows}


async def table_sizes(db: Postgres) -> tuple[int, int]:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM refresh_tokens) AS t, (SELECT count(*) FROM grants) AS g"
        )
    return row["t"], row["g"]


@dataclass
class Lines:
    """The progress a run reported."""

    lines: list[str]

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def batches(self, phase: str) -> list[int]:
        """Rows (or grants) each batch of a phase deleted, in order."""
        pattern = re.compile(rf"{phase}, batch (\d+): .*?(\d+) deleted")
        found = [pattern.match(line) for line in self.lines]
        numbered = [(int(m[1]), int(m[2])) for m in found if m]
        assert [n for n, _ in numbered] == list(range(1, len(numbered) + 1))
        return [deleted for _, deleted in numbered]


# --------------------------------------------------------------------------- the rules


async def test_purge_deletes_what_expired_and_keeps_what_guarantees_need(
    postgres: Postgres,
) -> None:
    db = postgres
    await add_client(db)
    # A family rotated every 54 minutes for 3.5 hours: three rows expired long ago, one retired
    # but unexpired (presenting it must still revoke the family), one live.
    t0 = NOW - 3.5 * HOUR
    live = await family(
        db, "live", [t0, t0 + 0.9 * HOUR, t0 + 1.8 * HOUR, t0 + 2.7 * HOUR, NOW - 0.3 * HOUR]
    )
    # Ended: every row expired; the grant has nothing left to guarantee.
    ended = await family(db, "ended", [NOW - 3 * HOUR, NOW - 2.5 * HOUR])
    # Expired only within the safety margin: stays for now.
    recent = await family(db, "recent", [NOW - TTL - 100])
    # Revoked 24 minutes ago, its newest row unexpired: refused either way, and its rows stay
    # until they expire, like any other.
    revoked = await family(db, "revoked", [NOW - 1.5 * HOUR, NOW - 0.9 * HOUR])
    await db.grants.revoke_grant("revoked", NOW - 0.4 * HOUR)
    # A code replay's tombstone: recent ones must outlive the exchange they pre-empt.
    await db.grants.revoke_grant("tomb-new", NOW - 100)
    await db.grants.revoke_grant("tomb-old", NOW - 1000)
    # Grants issued without a refresh token: the recent one's access token is still valid.
    await access_only(db, "access-new", NOW - 800)
    await access_only(db, "access-old", NOW - 1000)

    lines = Lines([])
    report = await purge(db, RETENTION, NOW, batch_size=4, progress=lines)

    assert await stored(db, live) == set(live[3:])
    assert await stored(db, ended) == set()
    assert await stored(db, recent) == set(recent)
    assert await stored(db, revoked) == {revoked[1]}
    everyone = [
        "live",
        "ended",
        "recent",
        "revoked",
        "tomb-new",
        "tomb-old",
        "access-new",
        "access-old",
    ]
    gone = {"ended", "tomb-old", "access-old"}
    assert await present(db, everyone) == set(everyone) - gone
    assert (report.refresh_tokens, report.grants) == (3 + 2 + 1, 3)
    assert report.complete and not report.dry_run
    assert (report.batches["refresh_tokens"], report.batches["grants"]) == (2, 2)
    assert lines.batches("expired refresh tokens") == [4, 2]
    # The pass over the 7 grants left, in key order: access-new, access-old, live, recent |
    # revoked, tomb-new, tomb-old.
    assert lines.batches("grants without refresh tokens") == [1, 1]

    # What the guarantees need still works after the purge.
    assert isinstance(await rotate(db.grants, live[4], NOW, 0, Next("live-5", NOW)), Rotated)
    assert await db.grants.grant("access-new") is not None  # its access token still checks
    assert await rotate(db.grants, revoked[1], NOW, 0, Next("never", NOW)) == Rejected()
    late = await db.grants.issue(grant("tomb-new"), lookup_hash("tomb-new-0"), NOW + TTL, NOW)
    assert late is False  # the replay's revocation still wins over its exchange
    # The retired, unexpired token is still recognised: reuse revokes the whole family.
    assert await rotate(db.grants, live[3], NOW + 1, 0, Next("x", NOW)) == Rejected(reused=True)
    assert await db.grants.grant("live") is None
    assert await rotate(db.grants, lookup_hash("live-5"), NOW + 2, 0, Next("y", NOW)) == Rejected()

    # A second run as of the same time finds nothing more.
    again = await purge(db, RETENTION, NOW, batch_size=4)
    assert (again.refresh_tokens, again.grants) == (0, 0)


async def test_rows_stay_while_access_tokens_minted_with_them_live(postgres: Postgres) -> None:
    """With access tokens outliving refresh tokens, a row expired 2 h ago may have minted an
    access token that lives another 2 h: neither it nor its grant may go yet."""
    await add_client(postgres)
    hashes = await family(postgres, "g", [NOW - 3 * HOUR])
    long_access = Retention(
        access_token_ttl=5 * HOUR, refresh_token_ttl=TTL, code_ttl=60, margin=300
    )
    report = await purge(postgres, long_access, NOW)
    assert (report.refresh_tokens, report.grants) == (0, 0)
    assert await stored(postgres, hashes) == set(hashes)
    report = await purge(postgres, long_access, NOW + 2 * HOUR + 301)
    assert (report.refresh_tokens, report.grants) == (1, 1)


# --------------------------------------------------------------------------- batches


async def test_batches_are_bounded_and_reported(postgres: Postgres) -> None:
    await add_client(postgres)
    # 95 grants with one expired token each, 5 live ones, 25 tombstones.
    await asyncio.gather(*(family(postgres, f"old-{i:03}", [NOW - 3 * HOUR]) for i in range(95)))
    await asyncio.gather(*(family(postgres, f"new-{i}", [NOW - 60]) for i in range(5)))
    for i in range(25):
        await postgres.grants.revoke_grant(f"tomb-{i:02}", NOW - 2 * HOUR)

    lines = Lines([])
    report = await purge(postgres, RETENTION, NOW, batch_size=10, progress=lines)

    assert lines.batches("expired refresh tokens") == [10] * 9 + [5]
    # The pass over the 30 grants left, 10 at a time: new-0..4 come first in key order.
    assert lines.batches("grants without refresh tokens") == [5, 10, 10]
    assert report.batches == {"refresh_tokens": 10, "grants": 3}
    assert report.as_json()["tables"] == {"refresh_tokens": 95, "grants": 95 + 25}
    assert report.as_json()["batches"] == 13
    assert await table_sizes(postgres) == (5, 5)
    assert lines.lines[-1] == "deleted 95 refresh token(s) and 120 grant(s) in 13 batch(es)"


async def test_dry_run_counts_what_a_run_deletes_and_deletes_nothing(postgres: Postgres) -> None:
    await add_client(postgres)
    await family(postgres, "live", [NOW - 1.5 * HOUR, NOW - 0.8 * HOUR, NOW - 0.1 * HOUR])
    await family(postgres, "ended", [NOW - 3 * HOUR, NOW - 2.5 * HOUR])
    await postgres.grants.revoke_grant("tomb", NOW - HOUR)
    await access_only(postgres, "access", NOW - 2 * HOUR)
    before = await table_sizes(postgres)

    dry = await purge(postgres, RETENTION, NOW, batch_size=2, dry_run=True)
    assert await table_sizes(postgres) == before
    real = await purge(postgres, RETENTION, NOW, batch_size=2)

    assert dry.dry_run and not real.dry_run
    assert (dry.refresh_tokens, dry.grants) == (real.refresh_tokens, real.grants) == (3, 3)
    assert await table_sizes(postgres) == (before[0] - 3, before[1] - 3)


async def test_max_seconds_stops_between_batches_and_the_next_run_goes_on(
    postgres: Postgres,
) -> None:
    await add_client(postgres)
    await asyncio.gather(*(family(postgres, f"old-{i:02}", [NOW - 3 * HOUR]) for i in range(30)))
    ticks = iter(range(1000))  # a clock that moves one second each time it is read

    first = await purge(
        postgres, RETENTION, NOW, batch_size=4, max_seconds=3, monotonic=lambda: float(next(ticks))
    )
    assert not first.complete
    assert first.batches["refresh_tokens"] == 2  # read at 0 (deadline 3), 1, 2, then 3: stop
    assert first.refresh_tokens == 8
    assert first.as_json()["complete"] is False

    rest = await purge(postgres, RETENTION, NOW, batch_size=4)
    assert rest.complete
    assert (first.refresh_tokens + rest.refresh_tokens, first.grants + rest.grants) == (30, 30)
    assert await table_sizes(postgres) == (0, 0)


async def test_bad_batch_size_is_refused(postgres: Postgres) -> None:
    for size in (0, 10_001):
        with pytest.raises(ValueError, match="batch_size"):
            await purge(postgres, RETENTION, NOW, batch_size=size)


# --------------------------------------------------------------------------- the race


async def test_purges_racing_a_stream_of_refreshes_lose_nothing(postgres: Postgres) -> None:
    """Two purges (so SKIP LOCKED is exercised too) run while 40 families rotate five times
    each; every family also has rows the purges are deleting meanwhile."""
    db = postgres
    await add_client(db)
    families = await asyncio.gather(
        *(family(db, f"live-{i:02}", [NOW - 7000, NOW - 4000, NOW - 1000]) for i in range(40))
    )
    await asyncio.gather(*(family(db, f"old-{i:03}", [NOW - 3 * HOUR]) for i in range(200)))
    await db.grants.ping()
    rotations: list[tuple[float, float]] = []
    purge_batches: list[float] = []

    async def refresh(grant_id: str, hashes: list[bytes]) -> list[bytes]:
        chain = [hashes[-1]]
        for step in range(1, 6):
            factory = Next(f"{grant_id}-r{step}", NOW + step)
            started = time.monotonic()
            outcome = await rotate(db.grants, chain[-1], NOW + step, 0, factory)
            rotations.append((started, time.monotonic()))
            assert isinstance(outcome, Rotated), (grant_id, step, outcome)
            chain.append(factory.token_hash)
        return chain

    def tick(line: str) -> None:
        purge_batches.append(time.monotonic())

    async def run_purge() -> PurgeReport:
        return await purge(db, RETENTION, NOW, batch_size=5, progress=tick)

    results = await asyncio.gather(
        run_purge(),
        run_purge(),
        *(refresh(f"live-{i:02}", hashes) for i, hashes in enumerate(families)),
    )
    reports: list[PurgeReport] = results[:2]  # type: ignore[assignment]
    chains: list[list[bytes]] = results[2:]  # type: ignore[assignment]

    first_start = min(start for start, _ in rotations)
    last_end = max(end for _, end in rotations)
    assert any(first_start < at < last_end for at in purge_batches), "no overlap: not a race"
    # Every expired row and ended grant went, exactly once between the two purges.
    assert sum(r.refresh_tokens for r in reports) == 40 * 2 + 200
    assert sum(r.grants for r in reports) == 200
    # Every family: its unexpired history and all five successors, one of them live.
    for i, (hashes, chain) in enumerate(zip(families, chains, strict=True)):
        assert await stored(db, hashes + chain) == set(chain), f"live-{i:02}"
        assert await count_rows(db, f"live-{i:02}") == 6
        latest = await db.grants.inspect(chain[-1])
        assert latest is not None and latest.retired_at is None and not latest.revoked
    assert await table_sizes(db) == (40 * 6, 40)


# --------------------------------------------------------------------------- the change feed


async def test_the_change_feed_keeps_some_hours_and_always_its_newest_row(
    postgres: Postgres,
) -> None:
    """Rule 3: rows of `changes` older than CHANGES_KEPT go, in batches; the newest never does,
    so that a replica's feed can still tell a purged gap from nothing having changed."""
    old = [(f"old-{i}", to_timestamp(NOW - CHANGES_KEPT - 60 - i)) for i in range(7)]
    insert = "INSERT INTO changes (kind, key, changed_at) VALUES ('client', $1, $2)"
    async with postgres.connection() as conn:
        await conn.execute("DELETE FROM changes")
        await conn.executemany(insert, [*old, ("recent", to_timestamp(NOW - CHANGES_KEPT + 60))])

    dry = await purge(postgres, RETENTION, NOW, dry_run=True)
    assert dry.changes == 7 and dry.as_json()["changes"] == 7
    lines = Lines([])
    report = await purge(postgres, RETENTION, NOW, batch_size=3, progress=lines)
    assert report.changes == 7 and report.as_json()["changes"] == 7
    assert lines.batches("change feed") == [3, 3, 1]
    assert report.batches == {"refresh_tokens": 1, "grants": 0}  # rules 1 and 2 unchanged
    assert await feed_keys(postgres) == ["recent"]

    # Everything old: all but the newest row go.
    async with postgres.connection() as conn:
        await conn.execute("DELETE FROM changes")
        await conn.executemany(insert, old[:3])
    assert (await purge(postgres, RETENTION, NOW)).changes == 2
    assert await feed_keys(postgres) == ["old-2"]  # inserted last: the highest seq


async def feed_keys(db: Postgres) -> list[str]:
    async with db.connection() as conn:
        return [row["key"] for row in await conn.fetch("SELECT key FROM changes ORDER BY seq")]
