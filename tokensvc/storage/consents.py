"""Remembered consent (OIDC Core §3.1.2.4): the scopes a person has let a client have, so
the login front-end asks again only when a client wants more than was granted before.

Memory for `tokensvc dev`, Postgres in production (table `consents`, schema/0002_login.sql).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from tokensvc.inprocess import InProcess
from tokensvc.storage.postgres.pool import Pool


def _scope_tokens(scopes: Iterable[str]) -> list[str]:
    """The distinct scope tokens, sorted; refuses what cannot be a scope token."""
    if isinstance(scopes, str | bytes):
        raise TypeError("scopes must be an iterable of scope tokens, not one string")
    tokens = set(scopes)
    for token in tokens:
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise ValueError(f"not a scope token: {token!r}")
    return sorted(tokens)


# --------------------------------------------------------------------------- memory


class MemoryConsents(InProcess):
    """In-process consents (one process only, lost on exit). Atomic because no method awaits.
    Grows with the number of (person, client) pairs, as the Postgres table does."""

    def __init__(self) -> None:
        self._granted: dict[tuple[str, str], frozenset[str]] = {}

    async def granted(self, sub: str, client_id: str) -> frozenset[str]:
        return self._granted.get((sub, client_id), frozenset())

    async def grant(self, sub: str, client_id: str, scopes: Iterable[str]) -> None:
        tokens = _scope_tokens(scopes)
        if tokens:
            key = (sub, client_id)
            self._granted[key] = self._granted.get(key, frozenset()).union(tokens)

    async def of_person(self, sub: str) -> dict[str, frozenset[str]]:
        return {client: scopes for (who, client), scopes in self._granted.items() if who == sub}

    async def withdraw(self, sub: str, client_id: str) -> None:
        self._granted.pop((sub, client_id), None)

    def forget_client(self, client_id: str) -> None:
        """Drop every consent given to `client_id` (call it when the client is removed)."""
        for key in [k for k in self._granted if k[1] == client_id]:
            del self._granted[key]


# --------------------------------------------------------------------------- postgres

_GRANTED = "SELECT scopes FROM consents WHERE sub = $1 AND client_id = $2"
_OF_PERSON = "SELECT client_id, scopes FROM consents WHERE sub = $1"
_WITHDRAW = "DELETE FROM consents WHERE sub = $1 AND client_id = $2"

# One upsert: the row's lock serialises concurrent grants for one pair, and under READ
# COMMITTED the DO UPDATE sees the latest committed `scopes`, so the union never loses one.
_GRANT = """
INSERT INTO consents AS c (sub, client_id, scopes, granted_at) VALUES ($1, $2, $3, now())
ON CONFLICT (sub, client_id) DO UPDATE
SET scopes = ARRAY(SELECT DISTINCT s FROM unnest(c.scopes || EXCLUDED.scopes) AS u(s)
                   ORDER BY s),
    granted_at = EXCLUDED.granted_at
"""


class PostgresConsents:
    """Consents in the `consents` table, through the shared pool. `granted_at` is the
    database's `now()` of the latest grant (for operators; no decision reads it)."""

    def __init__(self, db: Pool) -> None:
        self._db = db

    async def granted(self, sub: str, client_id: str) -> frozenset[str]:
        async with self._db.connection() as conn:
            scopes: list[str] | None = await conn.fetchval(_GRANTED, sub, client_id)
        return frozenset(scopes or ())

    async def grant(self, sub: str, client_id: str, scopes: Iterable[str]) -> None:
        tokens = _scope_tokens(scopes)
        if not tokens:
            return
        async with self._db.connection() as conn:
            try:
                await conn.execute(_GRANT, sub, client_id, tokens)
            except asyncpg.ForeignKeyViolationError:
                return  # the client is gone, and its consents with it

    async def of_person(self, sub: str) -> dict[str, frozenset[str]]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_OF_PERSON, sub)
        return {row["client_id"]: frozenset(row["scopes"]) for row in rows}

    async def withdraw(self, sub: str, client_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_WITHDRAW, sub, client_id)

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        """Closes the pool shared with the sibling stores."""
        await self._db.close()
