"""Back-channel logout deliveries owed (table `logout_deliveries`, schema/0011_logout.sql),
queued by `PostgresGrants.end_session`; see `tokensvc.storage.protocols.LogoutQueue`."""

from __future__ import annotations

from tokensvc.models import LogoutDelivery
from tokensvc.storage.postgres.pool import PoolStore, to_timestamp

# Lease the oldest due rows: locked ones (another replica leasing them now) are skipped, and
# the lease is their next_attempt_at, so nobody else takes them until it runs out.
_TAKE_DUE = """
WITH due AS (
    SELECT delivery_id FROM logout_deliveries
    WHERE next_attempt_at <= $1
    ORDER BY next_attempt_at, delivery_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE logout_deliveries d SET next_attempt_at = $2
FROM due WHERE d.delivery_id = due.delivery_id
RETURNING d.delivery_id, d.client_id, d.sub, d.sid, d.created_at, d.attempts
"""
_RETRY = """
UPDATE logout_deliveries SET attempts = attempts + 1, next_attempt_at = $2
WHERE delivery_id = $1
"""
_FINISH = "DELETE FROM logout_deliveries WHERE delivery_id = $1"


class PostgresLogoutQueue(PoolStore):
    async def take_due(self, now: float, lease: float, limit: int) -> list[LogoutDelivery]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_TAKE_DUE, to_timestamp(now), to_timestamp(now + lease), limit)
        taken = [
            LogoutDelivery(
                r["delivery_id"],
                r["client_id"],
                r["sub"],
                r["sid"],
                r["created_at"].timestamp(),
                r["attempts"],
            )
            for r in rows
        ]
        return sorted(taken, key=lambda d: (d.created_at, d.delivery_id))

    async def retry(self, delivery_id: str, at: float) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_RETRY, delivery_id, to_timestamp(at))

    async def finish(self, delivery_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_FINISH, delivery_id)
