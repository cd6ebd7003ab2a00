"""Registered clients in Postgres (table `clients`)."""

from __future__ import annotations

import asyncpg

from tokensvc.models import Client
from tokensvc.storage.postgres.pool import PoolStore, to_timestamp

_CLIENT_COLUMNS = (
    "client_id, name, auth_method, grant_types, redirect_uris, scopes, secret_hash, created_at,"
    " require_consent, rate_limit, rate_burst"
)
_CLIENT_GET = f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE client_id = $1"  # noqa: S608
_CLIENT_LIST = f"SELECT {_CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id"  # noqa: S608
_CLIENT_ADD = f"""
INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (client_id) DO NOTHING
"""  # noqa: S608
# Grants, their refresh tokens and the consents given to the client go with it (ON DELETE
# CASCADE).
_CLIENT_REMOVE = "DELETE FROM clients WHERE client_id = $1"


def _client(row: asyncpg.Record) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        auth_method=row["auth_method"],
        grant_types=frozenset(row["grant_types"]),
        redirect_uris=tuple(row["redirect_uris"]),
        scopes=frozenset(row["scopes"]),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"].timestamp(),
        require_consent=row["require_consent"],
        rate_limit=row["rate_limit"],
        rate_burst=row["rate_burst"],
    )


class PostgresClients(PoolStore):
    async def get(self, client_id: str) -> Client | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_CLIENT_GET, client_id)
        return None if row is None else _client(row)

    async def add(self, client: Client) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                _CLIENT_ADD,
                client.client_id,
                client.name,
                client.auth_method,
                sorted(client.grant_types),
                list(client.redirect_uris),
                sorted(client.scopes),
                client.secret_hash,
                to_timestamp(client.created_at),
                client.require_consent,
                client.rate_limit,
                client.rate_burst,
            )
        return status == "INSERT 0 1"

    async def list(self) -> list[Client]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_CLIENT_LIST)
        return [_client(row) for row in rows]

    async def remove(self, client_id: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_CLIENT_REMOVE, client_id)
        return status == "DELETE 1"
