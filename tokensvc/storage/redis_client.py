"""The one way tokensvc opens Redis: short timeouts, so a dead server is a quick 503.

Shared by every Redis-backed store (authorization codes, the login front-end's sessions and
failure counters); it imports nothing of theirs, so either side may use it.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

# What a Redis call may raise when the server is down, slow or refusing: each store turns
# these into `StoreUnavailable("redis", ...)`. (`redis.exceptions.TimeoutError` and
# `ConnectionError` are `RedisError`s; a few socket paths raise bare `OSError`s.)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


def connect(url: str) -> aioredis.Redis:
    """A client with short timeouts: a dead Redis must turn into a quick 503, not a hang."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
        retry_on_timeout=False,
    )
