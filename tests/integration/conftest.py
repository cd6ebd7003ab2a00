"""A token service per test, on real loopback sockets, over each storage backend.

`backend` is "memory" (the `tokensvc dev` stores) or "real" (Redis codes + Postgres clients,
users, grants and refresh tokens). Tests that take `harness` run once per backend.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.harness import INTERNAL_TOKEN, Clock, Harness, make_service, start
from tests.login_harness import Login, start_login
from tests.servers import create_database, run_sync
from tokensvc.limits.failures import MemoryFailureLimiter, RedisFailureLimiter
from tokensvc.login.context import LoginContext
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.models import User
from tokensvc.registration import new_user
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import KeySet, keyset_from_jwks
from tokensvc.storage.consents import MemoryConsents, PostgresConsents
from tokensvc.storage.ephemeral import MemoryEphemeral, RedisEphemeral
from tokensvc.storage.memory_codes import MemoryCodes
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.redis_codes import RedisCodes
from tokensvc.storage.replay import RedisReplay
from tokensvc.wiring.stores import PUSHED_PREFIX, Stores, memory_stores

INTEGRATION_REDIS_DB = 1
_TABLES = "refresh_tokens, grants, consents, clients, users, federations, resources"


@pytest.fixture(scope="session")
def es256_keys() -> KeySet:
    return keyset_from_jwks(generate_jwks("ES256"))


@pytest.fixture(scope="module")
def module_database(request: pytest.FixtureRequest, postgres_admin_url: str) -> str:
    name = "it_" + re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    url = create_database(postgres_admin_url, name)
    run_sync(lambda: migrate(url))
    return url


@pytest.fixture(params=["memory", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    import time

    return Clock(time.time())


@dataclass
class RealBackend:
    pg: Postgres
    redis: aioredis.Redis


@pytest.fixture
async def real_backend(
    backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[RealBackend | None]:
    """Redis (a flushed database of its own) and Postgres (truncated) for one test; None for
    the memory backend (and then no server is started)."""
    if backend == "memory":
        yield None
        return
    redis_url: str = request.getfixturevalue("redis_url")
    module_database: str = request.getfixturevalue("module_database")
    db_url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{INTEGRATION_REDIS_DB}"))
    client = aioredis.Redis.from_url(
        db_url, max_connections=128, socket_timeout=2.0, socket_connect_timeout=1.0
    )
    await client.flushdb()
    pg = await Postgres.connect(module_database, max_size=40)
    async with pg.connection() as conn:
        await conn.execute(f"TRUNCATE {_TABLES} CASCADE")
    try:
        yield RealBackend(pg, client)
    finally:
        await client.aclose()
        await pg.close()


@pytest.fixture
def stores(real_backend: RealBackend | None, clock: Clock) -> Stores:
    real = real_backend
    if real is None:
        memory = memory_stores()
        return Stores(
            codes=MemoryCodes(clock),
            clients=memory.clients,
            users=memory.users,
            grants=memory.grants,
            logouts=memory.logouts,
            resources=memory.resources,
            pushed=MemoryEphemeral(clock),
        )
    return Stores(
        codes=RedisCodes(real.redis),
        clients=real.pg.clients,
        users=real.pg.users,
        grants=real.pg.grants,
        logouts=real.pg.logouts,
        federations=real.pg.federations,
        replay=RedisReplay(real.redis),
        resources=real.pg.resources,
        pushed=RedisEphemeral(real.redis, PUSHED_PREFIX),
    )


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def make_harness(
    stores: Stores, es256_keys: KeySet, clock: Clock, log_sink: Any
) -> AsyncIterator[ServiceFactory]:
    """Start a service with given settings overrides; checks the logs for leaks at the end."""
    started: list[tuple[list[Any], Harness]] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    mark = log_sink.mark()

    async def factory(keys: KeySet | None = None, **settings: Any) -> Harness:
        svc = make_service(stores, keys or es256_keys, clock, **settings)
        runners, public_url, internal_url = await start(svc)
        harness = Harness(svc, public_url, internal_url, http, raw=stores)
        harness.remember("internal-test-token-0123456789")
        started.append((runners, harness))
        return harness

    try:
        yield factory
    finally:
        for runners, _ in started:
            for runner in runners:
                await runner.cleanup()
        await http.close()
    secrets = set().union(*(h.secrets for _, h in started)) if started else set()
    log_sink.assert_clean(mark, secrets)


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    return await make_harness()


@pytest.fixture
async def make_login(
    real_backend: RealBackend | None, harness: Harness, clock: Clock
) -> AsyncIterator[Callable[..., Any]]:
    """Start the login front-end next to `harness`'s token service, over the same backend."""
    started: list[Login] = []
    http = aiohttp.ClientSession()

    async def factory(*, token_url: str | None = None, **settings: Any) -> Login:
        real = real_backend
        if real is None:
            consents: Any = MemoryConsents()
            ephemeral: Any = MemoryEphemeral(clock)
            limiter: Any = MemoryFailureLimiter(clock)
        else:
            consents = PostgresConsents(real.pg)
            ephemeral = RedisEphemeral(real.redis, "login")
            limiter = RedisFailureLimiter(real.redis)
        ctx = LoginContext(
            settings=harness.settings.with_(**{"dev": True, **settings}),
            users=harness.stores.users,
            consents=consents,
            ephemeral=ephemeral,
            limiter=limiter,
            clock=clock,
            api=TokenAPI(token_url or harness.internal_url, INTERNAL_TOKEN, http),
        )
        login = await start_login(ctx, harness)
        started.append(login)
        return login

    try:
        yield factory
    finally:
        for login in started:
            await login.close()
        await http.close()


@pytest.fixture
async def login(make_login: Callable[..., Any]) -> Login:
    return await make_login()


PASSWORD = "correct horse battery"


@pytest.fixture
async def person(harness: Harness) -> User:
    """Ada, who signs in with `PASSWORD` (remembered: no log line may hold it)."""
    user = new_user(username="ada", password=PASSWORD, email="ada@example.com", name="Ada Lovelace")
    assert await harness.stores.users.add(user)
    harness.remember(PASSWORD)
    return user
