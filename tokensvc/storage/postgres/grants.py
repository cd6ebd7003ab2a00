"""Grants and their refresh-token families in Postgres (tables `grants`, `refresh_tokens`).

Every guarantee of `GrantStore` that needs atomicity is kept by a single SQL statement in
autocommit, never by an explicit transaction:

* `issue` upserts the grant and inserts its first token in one CTE; a tombstone left by an
  earlier `revoke_grant` keeps its `revoked_at`, so the revocation wins.
* `rotate` retires the presented token and inserts its successor in one CTE whose UPDATE only
  matches a still-live row. Under READ COMMITTED a concurrent UPDATE of the same row waits for
  the first to commit and then re-checks `retired_at IS NULL`, so exactly one caller inserts a
  successor; the others are told they lost (`False`) and decide on the row as it now is.
* `revoke_grant` is one upsert on the grant row; no token row is deleted, so a later
  presentation of any token of the family is still recognised.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from tokensvc.binding import NO_BINDING, Binding
from tokensvc.models import Grant, GrantSummary, RefreshState, SessionGrant, Successor
from tokensvc.storage.batch import Batcher
from tokensvc.storage.postgres.pool import Pool, PoolStore, to_epoch, to_timestamp

# Revoke, or leave a tombstone for a grant not issued yet; the first revocation time stays.
_REVOKE = """
INSERT INTO grants (grant_id, created_at, revoked_at) VALUES ($1, $2, $2)
ON CONFLICT (grant_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at
WHERE grants.revoked_at IS NULL
"""

# A browser session ended: its live grants without offline_access revoked and a logout
# delivery queued per client (logout_deliveries, tokensvc.storage.postgres.logouts) in the same
# statement (rows locked, so a concurrent revocation or end waits), all of them listed.
_END_SESSION = """
WITH session AS (
    SELECT grant_id, client_id, created_at,
           'offline_access' = ANY (string_to_array(scope, ' ')) AS offline
    FROM grants
    WHERE sub = $1 AND sid = $2 AND revoked_at IS NULL AND client_id IS NOT NULL
    FOR UPDATE
), ended AS (
    UPDATE grants g SET revoked_at = $3
    FROM session s
    WHERE g.grant_id = s.grant_id AND NOT s.offline
    RETURNING g.grant_id
), queued AS (
    INSERT INTO logout_deliveries (delivery_id, client_id, sub, sid, created_at, next_attempt_at)
    SELECT gen_random_uuid()::text, client_id, $1, $2, $3, $3
    FROM (SELECT DISTINCT client_id FROM session) clients
    ON CONFLICT ON CONSTRAINT logout_deliveries_once DO NOTHING
)
SELECT grant_id, client_id, NOT offline AS ended FROM session ORDER BY created_at, grant_id
"""

# A person's live grants (index grants_sub_live), oldest first.
_OF_PERSON = """
SELECT grant_id, client_id, scope, created_at, resources
FROM grants
WHERE sub = $1 AND revoked_at IS NULL AND client_id IS NOT NULL
ORDER BY created_at, grant_id
"""

_LIVE_GRANT = """
SELECT client_id, sub, scope, auth_time, acr, amr, sid, claims, cnf_x5t, resources, cnf_jkt
FROM grants
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
                         $11::bytea[], $12::float8[], $13::text[], $14::jsonb[], $15::text[])
        AS e(grant_id, client_id, sub, scope, auth_time, acr, amr, sid, claims, created_epoch,
             token_hash, expires_epoch, cnf_x5t, resources, cnf_jkt)
    -- times travel as epoch seconds (float8): cheaper to encode than timestamptz values
    CROSS JOIN LATERAL (SELECT to_timestamp(created_epoch) AS created_at,
                               to_timestamp(expires_epoch) AS expires_at) AS t
), grant_rows AS (
    INSERT INTO grants (grant_id, client_id, sub, scope, auth_time, acr, amr, sid, claims,
                        created_at, cnf_x5t, resources, cnf_jkt)
    SELECT grant_id, client_id, sub, scope, auth_time, acr,
           CASE WHEN amr IS NULL THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(amr)) END,
           sid, claims, created_at, cnf_x5t,
           ARRAY(SELECT jsonb_array_elements_text(resources)), cnf_jkt
    FROM input
    ON CONFLICT (grant_id) DO UPDATE
    SET client_id = EXCLUDED.client_id, sub = EXCLUDED.sub, scope = EXCLUDED.scope,
        auth_time = EXCLUDED.auth_time, acr = EXCLUDED.acr, amr = EXCLUDED.amr,
        sid = EXCLUDED.sid, claims = EXCLUDED.claims, cnf_x5t = EXCLUDED.cnf_x5t,
        resources = EXCLUDED.resources, cnf_jkt = EXCLUDED.cnf_jkt
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
       g.client_id, g.sub, g.scope, g.auth_time, g.acr, g.amr, g.sid, g.claims, g.cnf_x5t,
       g.resources, g.cnf_jkt
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


def _grant(grant_id: str, row: asyncpg.Record) -> Grant:
    amr, x5t, jkt = row["amr"], row["cnf_x5t"], row["cnf_jkt"]
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
        binding=NO_BINDING if x5t is None and jkt is None else Binding(x5t_s256=x5t, jkt=jkt),
        resources=tuple(row["resources"] or ()),
    )


_IssueRow = tuple[Any, ...]
_RotateRow = tuple[bytes, float, bytes, bytes, float]
_OUT = 1  # batches of one statement out at a time


class PostgresGrants(PoolStore):
    """Issue, inspect and rotate are batched per event-loop turn, one batch of each out at a
    time (`tokensvc.storage.batch`: group commit, and what it measured)."""

    def __init__(self, db: Pool) -> None:
        super().__init__(db)
        self._issues: Batcher[_IssueRow, bool] = Batcher(self._issue_many, max_in_flight=_OUT)
        self._states: Batcher[bytes, asyncpg.Record | None] = Batcher(
            self._states_many, max_in_flight=_OUT
        )
        self._rotations: Batcher[_RotateRow, bool] = Batcher(self._rotate_many, max_in_flight=_OUT)
        self.batchers = {"issue": self._issues, "inspect": self._states, "rotate": self._rotations}

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
                grant.binding.x5t_s256,
                orjson.dumps(list(grant.resources)).decode(),
                grant.binding.jkt,
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

    async def rotate(self, token_hash: bytes, successor: Successor, now: float) -> bool:
        return await self._rotations.submit(
            (
                token_hash,
                now,
                successor.sealed_response,
                successor.token_hash,
                successor.expires_at,
            )
        )

    async def grant(self, grant_id: str) -> Grant | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_LIVE_GRANT, grant_id)
        return None if row is None else _grant(grant_id, row)

    async def inspect(self, token_hash: bytes) -> RefreshState | None:
        row = await self._states.submit(token_hash)
        if row is None or row["client_id"] is None:
            return None
        return RefreshState(
            token_hash=token_hash,
            grant=_grant(row["grant_id"], row),
            expires_at=row["expires_at"].timestamp(),
            retired_at=to_epoch(row["retired_at"]),
            successor_box=row["successor_box"],
            revoked=row["revoked"],
        )

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_REVOKE, grant_id, to_timestamp(now))

    async def end_session(self, sub: str, sid: str, now: float) -> list[SessionGrant]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_END_SESSION, sub, sid, to_timestamp(now))
        return [SessionGrant(r["grant_id"], r["client_id"], r["ended"]) for r in rows]

    async def of_person(self, sub: str) -> list[GrantSummary]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_OF_PERSON, sub)
        return [
            GrantSummary(
                grant_id=row["grant_id"],
                client_id=row["client_id"],
                scope=row["scope"],
                created_at=row["created_at"].timestamp(),
                resources=tuple(row["resources"] or ()),
            )
            for row in rows
        ]
