"""Clients, users, grants and refresh-token families, federations and resources in Postgres:
one shared pool (`pool`) and a module per store (`clients`, `users`, `grants`, `logouts`,
`federations`, `resources`)."""

from __future__ import annotations

import asyncpg

from tokensvc.storage.postgres.clients import PostgresClients
from tokensvc.storage.postgres.federations import PostgresFederations
from tokensvc.storage.postgres.grants import PostgresGrants
from tokensvc.storage.postgres.logouts import PostgresLogoutQueue
from tokensvc.storage.postgres.pool import DRIVER_ERRORS, STORE, Pool, split_pgbouncer
from tokensvc.storage.postgres.resources import PostgresResources
from tokensvc.storage.postgres.users import PostgresUsers

__all__ = [
    "DRIVER_ERRORS",
    "STORE",
    "Postgres",
    "PostgresClients",
    "PostgresFederations",
    "PostgresGrants",
    "PostgresLogoutQueue",
    "PostgresResources",
    "PostgresUsers",
    "split_pgbouncer",
]


class Postgres(Pool):
    """The shared pool and the stores built on it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.clients = PostgresClients(self)
        self.users = PostgresUsers(self)
        self.grants = PostgresGrants(self)
        self.logouts = PostgresLogoutQueue(self)
        self.federations = PostgresFederations(self)
        self.resources = PostgresResources(self)
