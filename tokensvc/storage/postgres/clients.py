"""Registered clients in Postgres (table `clients`)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from tokensvc.models import Client, Credentials
from tokensvc.storage.postgres.pool import PoolStore, to_epoch, to_timestamp

_COLUMNS = (
    "client_id",
    "name",
    "auth_method",
    "grant_types",
    "redirect_uris",
    "scopes",
    "secret_hash",
    "created_at",
    "require_consent",
    "rate_limit",
    "rate_burst",
    "jwks",
    "jwks_uri",
    "federated_issuer",
    "federated_subject",
    "tls_subject_dn",
    "tls_san_dns",
    "tls_san_uri",
    "resources",
    "dpop_bound",
    "require_par",
    "previous_secret_hash",
    "previous_secret_expires_at",
    "post_logout_redirect_uris",
    "backchannel_logout_uri",
    "reuse_access_token",
)
_CLIENT_COLUMNS = ", ".join(_COLUMNS)
_CLIENT_GET = f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE client_id = $1"  # noqa: S608
_CLIENT_LIST = f"SELECT {_CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id"  # noqa: S608
_PLACES = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
_CLIENT_ADD = f"""
INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES ({_PLACES})
ON CONFLICT (client_id) DO NOTHING
"""  # noqa: S608
# Everything but the id and the registration time, which a replacement keeps.
_CREATED = _COLUMNS.index("created_at")
_REPLACED = [c for c in _COLUMNS[1:] if c != "created_at"]
_CLIENT_REPLACE = (
    f"UPDATE clients SET ({', '.join(_REPLACED)}) = "  # noqa: S608
    f"ROW({', '.join(f'${i}' for i in range(2, len(_REPLACED) + 2))}) WHERE client_id = $1"
)
# Grants, their refresh tokens and the consents given to the client go with it (ON DELETE
# CASCADE).
_CLIENT_REMOVE = "DELETE FROM clients WHERE client_id = $1"
# A write that changes nothing still fires the change-feed trigger (schema/0009_change_feed.sql)
_CLIENT_TOUCH = "UPDATE clients SET name = name WHERE client_id = $1"


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
        credentials=Credentials(
            jwks=_json(row["jwks"]),
            jwks_uri=row["jwks_uri"],
            federated_issuer=row["federated_issuer"],
            federated_subject=row["federated_subject"],
            tls_subject_dn=row["tls_subject_dn"],
            tls_san_dns=row["tls_san_dns"],
            tls_san_uri=row["tls_san_uri"],
        ),
        resources=tuple(row["resources"]),
        dpop_bound=row["dpop_bound"],
        require_par=row["require_par"],
        previous_secret_hash=row["previous_secret_hash"],
        previous_secret_expires_at=to_epoch(row["previous_secret_expires_at"]),
        post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"]),
        backchannel_logout_uri=row["backchannel_logout_uri"],
        reuse_access_token=row["reuse_access_token"],
    )


def _json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _jsonb(value: object) -> str | None:
    """What asyncpg sends for a jsonb column (it has no codec for it: text)."""
    return None if value is None else orjson.dumps(value).decode()


def _row(client: Client) -> tuple[object, ...]:
    """The column values of `client`, in `_COLUMNS` order."""
    c = client.credentials
    previous_until = client.previous_secret_expires_at
    return (
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
        _jsonb(c.jwks),
        c.jwks_uri,
        c.federated_issuer,
        c.federated_subject,
        c.tls_subject_dn,
        c.tls_san_dns,
        c.tls_san_uri,
        list(client.resources),  # an array, in the order registered
        client.dpop_bound,
        client.require_par,
        client.previous_secret_hash,
        None if previous_until is None else to_timestamp(previous_until),
        list(client.post_logout_redirect_uris),
        client.backchannel_logout_uri,
        client.reuse_access_token,
    )


class PostgresClients(PoolStore):
    async def get(self, client_id: str) -> Client | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_CLIENT_GET, client_id)
        return None if row is None else _client(row)

    async def add(self, client: Client) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_CLIENT_ADD, *_row(client))
        return status == "INSERT 0 1"

    async def replace(self, client: Client) -> bool:
        async with self._db.connection() as conn:
            row = _row(client)
            status = await conn.execute(_CLIENT_REPLACE, *row[:_CREATED], *row[_CREATED + 1 :])
        return status == "UPDATE 1"

    async def touch(self, client_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(_CLIENT_TOUCH, client_id)

    async def list(self) -> list[Client]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(_CLIENT_LIST)
        return [_client(row) for row in rows]

    async def remove(self, client_id: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(_CLIENT_REMOVE, client_id)
        return status == "DELETE 1"
