"""Resource servers (RFC 8707) in Postgres (table `resources`)."""

from __future__ import annotations

import asyncpg

from tokensvc.models import Resource
from tokensvc.storage.postgres.pool import PoolStore, to_timestamp

_COLUMNS = "identifier, scopes, name, access_token_ttl, created_at"
_GET = f"SELECT {_COLUMNS} FROM resources WHERE identifier = $1"  # noqa: S608
_LIST = f"SELECT {_COLUMNS} FROM resources ORDER BY created_at, identifier"  # noqa: S608
_ADD = f"""
INSERT INTO resources ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (identifier) DO NOTHING
"""  # noqa: S608
_REMOVE = "DELETE FROM resources WHERE identifier = $1"


def _resource(row: asyncpg.Record) -> Resource:
    return Resource(
        identifier=row["identifier"],
        scopes=frozenset(row["scopes"]),
        name=row["name"],
        access_token_ttl=row["access_token_ttl"],
        created_at=row["created_at"].timestamp(),
    )


class PostgresResources(PoolStore):
    async def add(self, resource: Resource) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                _ADD,
                resource.identifier,
                sorted(resource.scopes),
                resource.name,
                resource.access_token_ttl,
                to_timestamp(resource.created_at),
            )
        return status == "INSERT 0 1"

    async def get(self, identifier: str) -> Resource | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_GET, identifier)
        return None if row is None else _resource(row)

    async def list(self) -> list[Resource]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_LIST)
        return [_resource(row) for row in rows]

    async def remove(self, identifier: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_REMOVE, identifier)
        return status == "DELETE 1"
