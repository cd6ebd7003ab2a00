"""argon2id verification off the event loop, with the same cost for unknown users."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from argon2.exceptions import InvalidHashError, VerificationError

from tokensvc.models import User
from tokensvc.registration import password_hasher


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so timing does not reveal which it was.
    return password_hasher.hash("tokensvc-unknown-user-placeholder")


def _check(password_hash: str, password: str) -> bool:
    try:
        return password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify(user: User | None, password: str) -> bool:
    """True when `user` exists and `password` is theirs; runs argon2 in a worker thread."""
    loop = asyncio.get_running_loop()
    password_hash = user.password_hash if user is not None else _dummy_hash()
    ok = await loop.run_in_executor(None, _check, password_hash, password)
    return ok and user is not None
