"""Trusted issuers of workload tokens in Postgres (table `federations`)."""

from __future__ import annotations

import asyncpg
import orjson

from tokensvc.models import Federation
from tokensvc.storage.postgres.pool import PoolStore, to_timestamp

_COLUMNS = "issuer, jwks, jwks_uri, created_at"
_GET = f"SELECT {_COLUMNS} FROM federations WHERE issuer = $1"  # noqa: S608
_LIST = f"SELECT {_COLUMNS} FROM federations ORDER BY created_at, issuer"  # noqa: S608
_ADD = f"""
INSERT INTO federations ({_COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT (issuer) DO NOTHING
"""  # noqa: S608
_REMOVE = "DELETE FROM federations WHERE issuer = $1"


def _federation(row: asyncpg.Record) -> Federation:
    jwks = row["jwks"]
    return Federation(
        issuer=row["issuer"],
        jwks=None if jwks is None else orjson.loads(jwks),
        jwks_uri=row["jwks_uri"],
        created_at=row["created_at"].timestamp(),
    )


class PostgresFederations(PoolStore):
    async def add(self, federation: Federation) -> bool:
        jwks = None if federation.jwks is None else orjson.dumps(federation.jwks).decode()
        async with self._db.connection() as conn:
            status = await conn.execute(
                _ADD,
                federation.issuer,
                jwks,
                federation.jwks_uri,
                to_timestamp(federation.created_at),
            )
        return status == "INSERT 0 1"

    async def get(self, issuer: str) -> Federation | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_GET, issuer)
        return None if row is None else _federation(row)

    async def list(self) -> list[Federation]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_LIST)
        return [_federation(row) for row in rows]

    async def remove(self, issuer: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_REMOVE, issuer)
        return status == "DELETE 1"
