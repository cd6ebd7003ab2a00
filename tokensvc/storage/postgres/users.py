"""People who sign in, in Postgres (table `users`, argon2id hashes)."""

from __future__ import annotations

import asyncpg

from tokensvc.models import User
from tokensvc.storage.postgres.pool import PoolStore

_USER_COLUMNS = "sub, username, password_hash, email, name, email_verified"
# No conflict target: a taken username or sub both mean "not added" (as in memory).
_USER_ADD = f"""
INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""  # noqa: S608
_USER_BY_USERNAME = f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1"  # noqa: S608
_USER_BY_SUB = f"SELECT {_USER_COLUMNS} FROM users WHERE sub = $1"  # noqa: S608


def _user(row: asyncpg.Record | None) -> User | None:
    if row is None:
        return None
    return User(
        sub=row["sub"],
        username=row["username"],
        password_hash=row["password_hash"],
        email=row["email"],
        name=row["name"],
        email_verified=row["email_verified"],
    )


class PostgresUsers(PoolStore):
    async def add(self, user: User) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                _USER_ADD,
                user.sub,
                user.username,
                user.password_hash,
                user.email,
                user.name,
                user.email_verified,
            )
        return status == "INSERT 0 1"

    async def by_username(self, username: str) -> User | None:
        async with self._db.connection() as conn:
            return _user(await conn.fetchrow(_USER_BY_USERNAME, username))

    async def by_sub(self, sub: str) -> User | None:
        async with self._db.connection() as conn:
            return _user(await conn.fetchrow(_USER_BY_SUB, sub))
