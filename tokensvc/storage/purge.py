"""Retention in Postgres: `tokensvc purge` deletes the refresh-token rows and grants that no
guarantee needs any more, in short batches, while the service keeps rotating.

The rules (`now` is the purge's clock, M = `SAFETY_MARGIN`, TTLs are the service's settings):

1. A refresh-token row goes once `expires_at < now - M - max(0, access_ttl - refresh_ttl)`.
   The service answers an expired token exactly as an unknown one (`invalid_grant`, and no
   reuse detection: `PostgresGrants._settled` looks at the expiry first), so deleting the row
   changes no answer. A retired row therefore stays as long as presenting it must still revoke
   its family (RFC 9700 §4.14.2): until its own expiry. A revoked family's rows go the same way
   (presenting one is refused before and after). The `max` term keeps a row until the access
   token minted with it has expired too, should access tokens outlive refresh tokens.
2. A grant goes once it has no refresh-token row left, was created before
   `now - M - access_ttl` and, if revoked, was revoked before `now - M - code_ttl`. Access-token
   checks look the grant up (`GrantStore.grant`), so a grant must outlive its access tokens: a
   grant issued without a refresh token minted one access token at `created_at`; any other
   lost its last row under rule 1, after every access token minted with its rows expired. A
   revoked grant refuses its access tokens whether its row is there or not, but the tombstone
   a code replay leaves before the first exchange's `issue` (RFC 6749 §4.1.2) must outlive
   that exchange, which started before its code expired.
3. The change feed (`changes`, schema/0009) keeps its rows for `CHANGES_KEPT`: a replica
   whose feed was away longer finds the rows after its last one gone and clears its caches
   instead (`storage.postgres.changes`). The newest row always stays, so that a replica can
   still tell such a gap from nothing having changed.
4. Nothing else: consents are a person's decision, not a credential (they go with their
   client); codes and the access-token deny-list live in Redis and expire by themselves.

Each batch is one short transaction of its own: rows are picked `FOR UPDATE SKIP LOCKED` (two
purges never wait on each other) and no lock outlives the batch. A rotation never waits on a
purge either: it updates only unexpired rows of grants that still have rows, and a purge
deletes neither. Grants are found in two ways: those whose last row a batch of rule 1 deleted
go in the same transaction; the others (issued without a refresh token, tombstones) by one
pass over the grants in primary-key order, a bounded slice per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from tokensvc import config
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.postgres.pool import to_timestamp

SAFETY_MARGIN = 3600.0  # seconds: clock skew between replicas, requests still in flight
CHANGES_KEPT = 6 * 3600.0  # seconds a change-feed row is kept (rule 3)
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000  # a batch must stay far below the 5 s statement timeout

# Rule 1: the oldest expired rows first (the index on expires_at hands them over in order).
_DELETE_EXPIRED = """
DELETE FROM refresh_tokens
WHERE token_hash = ANY(ARRAY(
    SELECT token_hash FROM refresh_tokens WHERE expires_at < $1
    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
RETURNING grant_id
"""
_COUNT_EXPIRED = "SELECT count(*) FROM refresh_tokens WHERE expires_at < $1"


def _purgeable(created: str, revoked: str, rows_kept: str = "") -> str:
    """Rule 2 for grant `g`, with horizons bound to the parameters `created` and `revoked`;
    `rows_kept` narrows the rows that keep the grant (a dry run counts expired ones as gone)."""
    return f"""g.created_at < {created}
    AND (g.revoked_at IS NULL OR g.revoked_at < {revoked})
    AND NOT EXISTS (SELECT 1 FROM refresh_tokens t
                    WHERE t.grant_id = g.grant_id {rows_kept})"""  # noqa: S608


# In the transaction of a rule-1 batch: the grants among those it touched left without a row.
_DELETE_EMPTIED = f"""
WITH gone AS (
    DELETE FROM grants g WHERE g.grant_id = ANY($1::text[]) AND {_purgeable("$2", "$3")}
    RETURNING 1
)
SELECT count(*) FROM gone
"""  # noqa: S608

# One slice of the pass over every grant: the next `$2` grant ids after `$1`, in key order.
_GRANT_SLICE = """
WITH slice AS (
    SELECT ARRAY(SELECT grant_id FROM grants WHERE grant_id > $1 ORDER BY grant_id LIMIT $2)
        AS ids
), hit AS ({hit})
SELECT ids[cardinality(ids)] AS last, cardinality(ids) AS examined,
       (SELECT count(*) FROM hit) AS hits
FROM slice
"""
_DELETE_SLICE = _GRANT_SLICE.format(
    hit=f"""
    DELETE FROM grants g WHERE g.grant_id = ANY((SELECT ids FROM slice)::text[])
      AND {_purgeable("$3", "$4")}
    RETURNING 1"""  # noqa: S608
)
_COUNT_SLICE = _GRANT_SLICE.format(
    hit=f"""
    SELECT 1 FROM grants g WHERE g.grant_id = ANY((SELECT ids FROM slice)::text[])
      AND {_purgeable("$3", "$4", "AND t.expires_at >= $5")}"""  # noqa: S608
)


# Rule 3: the oldest first, never the newest row.
_DELETE_CHANGES = """
DELETE FROM changes
WHERE seq = ANY(ARRAY(
    SELECT seq FROM changes
    WHERE changed_at < $1 AND seq < (SELECT max(seq) FROM changes)
    ORDER BY changed_at LIMIT $2 FOR UPDATE SKIP LOCKED))
"""
_COUNT_CHANGES = """
SELECT count(*) FROM changes WHERE changed_at < $1 AND seq < (SELECT max(seq) FROM changes)
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """The token lifetimes the service runs with, from which the rules' horizons follow."""

    access_token_ttl: float
    refresh_token_ttl: float
    code_ttl: float
    margin: float = SAFETY_MARGIN

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Retention:
        """The TTLs from the same `TOKENSVC_*` variables (and defaults) as the service's;
        `ConfigError` for a malformed one."""
        defaults: dict[str, Any] = {f.name: f.default for f in fields(config.Settings)}

        def ttl(name: str) -> int:
            return config._int(env, name.upper(), defaults[name], minimum=1)

        return cls(ttl("access_token_ttl"), ttl("refresh_token_ttl"), ttl("code_ttl"))

    def horizons(self, now: float) -> Horizons:
        lag = max(0.0, self.access_token_ttl - self.refresh_token_ttl)
        return Horizons(
            refresh_tokens_expired_before=now - self.margin - lag,
            grants_created_before=now - self.margin - self.access_token_ttl,
            grants_revoked_before=now - self.margin - self.code_ttl,
        )


@dataclass(frozen=True, slots=True)
class Horizons:
    """Epoch seconds: rows older than these (by the named column) may go."""

    refresh_tokens_expired_before: float
    grants_created_before: float
    grants_revoked_before: float

    def params(self) -> tuple[datetime, datetime, datetime]:
        return (
            to_timestamp(self.refresh_tokens_expired_before),
            to_timestamp(self.grants_created_before),
            to_timestamp(self.grants_revoked_before),
        )


@dataclass(slots=True)
class PurgeReport:
    """What a run deleted (or, dry, would delete), per table."""

    horizons: Horizons
    dry_run: bool
    refresh_tokens: int = 0
    grants: int = 0
    # Transactions (dry: queries) per phase: "refresh_tokens", then "grants".
    batches: dict[str, int] = field(default_factory=lambda: {"refresh_tokens": 0, "grants": 0})
    complete: bool = True  # False: --max-seconds ran out first; the next run goes on
    # Rule 3's rows of the change feed, apart from the tables and batches of rules 1 and 2.
    changes: int = 0

    def as_json(self) -> dict[str, Any]:
        h = self.horizons
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            "tables": {"refresh_tokens": self.refresh_tokens, "grants": self.grants},
            "changes": self.changes,
            "batches": sum(self.batches.values()),
            "horizons": {
                "refresh_tokens_expired_before": int(h.refresh_tokens_expired_before),
                "grants_created_before": int(h.grants_created_before),
                "grants_revoked_before": int(h.grants_revoked_before),
            },
        }


class _Budget:
    """--max-seconds: checked before each batch, so a batch in flight always completes."""

    def __init__(self, max_seconds: float | None, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._deadline = None if max_seconds is None else clock() + max_seconds

    def spent(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline


class _Run(NamedTuple):
    """One purge's shared state, handed to each of its passes."""

    db: Postgres
    report: PurgeReport
    batch_size: int
    budget: _Budget
    progress: Callable[[str], None]


async def purge(
    db: Postgres,
    retention: Retention,
    now: float,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seconds: float | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
    monotonic: Callable[[], float] = time.monotonic,
) -> PurgeReport:
    """Apply the rules as of `now`. Driver failures raise `StoreUnavailable`; the batches
    committed before stay committed, and a second run simply goes on."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
    h = retention.horizons(now)
    report = PurgeReport(h, dry_run)
    budget = _Budget(max_seconds, monotonic)
    when = "%Y-%m-%d %H:%M:%SZ"
    progress(
        f"{'dry run: counting' if dry_run else 'deleting'} refresh tokens that expired before "
        f"{to_timestamp(h.refresh_tokens_expired_before):{when}} and grants without one "
        f"created before {to_timestamp(h.grants_created_before):{when}} (if revoked: "
        f"revoked before {to_timestamp(h.grants_revoked_before):{when}}), "
        f"{batch_size} at a time"
    )
    run = _Run(db, report, batch_size, budget, progress)
    if dry_run:
        await _count_expired(db, report)
    else:
        await _delete_expired(run)
    if report.complete:
        await _grant_pass(run)
    if report.complete:
        await _trim_changes(run, now - CHANGES_KEPT)
    progress(
        f"{'would delete' if dry_run else 'deleted'} {report.refresh_tokens} refresh token(s) "
        f"and {report.grants} grant(s) in {sum(report.batches.values())} batch(es)"
        + ("" if report.complete else "; stopped at --max-seconds, run again to go on")
    )
    return report


async def _count_expired(db: Postgres, report: PurgeReport) -> None:
    async with db.connection() as conn:
        report.refresh_tokens = await conn.fetchval(_COUNT_EXPIRED, report.horizons.params()[0])
    report.batches["refresh_tokens"] += 1


async def _delete_expired(run: _Run) -> None:
    db, report, batch_size, budget, progress = run
    expired_before, created_before, revoked_before = report.horizons.params()
    while True:
        if budget.spent():
            report.complete = False
            return
        async with db.connection() as conn, conn.transaction():
            rows = await conn.fetch(_DELETE_EXPIRED, expired_before, batch_size)
            touched = list({row["grant_id"] for row in rows})
            grants = (
                await conn.fetchval(_DELETE_EMPTIED, touched, created_before, revoked_before)
                if touched
                else 0
            )
        report.refresh_tokens += len(rows)
        report.grants += grants
        report.batches["refresh_tokens"] += 1
        progress(
            f"expired refresh tokens, batch {report.batches['refresh_tokens']}: "
            f"{len(rows)} deleted ({report.refresh_tokens} so far), "
            f"{grants} grant(s) left without one deleted"
        )
        if len(rows) < batch_size:  # none left (or the rest is locked by another purge)
            return


async def _grant_pass(run: _Run) -> None:
    db, report, batch_size, budget, progress = run
    expired_before, created_before, revoked_before = report.horizons.params()
    extra: datetime | None
    if report.dry_run:
        sql, extra = _COUNT_SLICE, expired_before
    else:
        sql, extra = _DELETE_SLICE, None
    after = ""  # grant ids are never empty
    while True:
        if budget.spent():
            report.complete = False
            return
        async with db.connection() as conn:
            args = (after, batch_size, created_before, revoked_before)
            row = await conn.fetchrow(sql, *args, *(() if extra is None else (extra,)))
        assert row is not None  # an aggregate always returns its row
        if row["examined"] == 0:  # the previous slice ended exactly at the last grant
            return
        after = row["last"]
        report.grants += row["hits"]
        report.batches["grants"] += 1
        progress(
            f"grants without refresh tokens, batch {report.batches['grants']}: "
            f"{row['examined']} examined, {row['hits']} "
            f"{'to delete' if report.dry_run else 'deleted'} ({report.grants} so far)"
        )
        if row["examined"] < batch_size:  # that was the last slice
            return


async def _trim_changes(run: _Run, before: float) -> None:
    """Rule 3, in batches like the others; a line for each batch that deleted rows (the feed
    is small, and usually nothing is that old)."""
    db, report, batch_size, budget, progress = run
    horizon = to_timestamp(before)
    if report.dry_run:
        async with db.connection() as conn:
            report.changes = await conn.fetchval(_COUNT_CHANGES, horizon)
        if report.changes:
            progress(f"change feed: {report.changes} row(s) to delete")
        return
    batch = 0
    while True:
        if budget.spent():
            report.complete = False
            return
        async with db.connection() as conn:
            status = await conn.execute(_DELETE_CHANGES, horizon, batch_size)
        deleted = int(status.rsplit(" ", 1)[1])
        report.changes += deleted
        batch += 1
        if deleted:
            progress(f"change feed, batch {batch}: {deleted} deleted ({report.changes} so far)")
        if deleted < batch_size:
            return
