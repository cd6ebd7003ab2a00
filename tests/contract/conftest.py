"""Backends for the contract suites: each test runs once per backend of its protocol.

* codes: memory (injected clock) and Redis (`RedisCodes`, a dedicated database flushed before
  every test, real 1 s TTLs);
* clients, users, grants, federations, resources: memory and Postgres (one migrated database
  per test module, truncated before every test);
* the login front-end's stores: ephemeral records and the failure limiter against memory
  (injected clock) and Redis (the codes' database, flushed before every test), consents
  against memory and Postgres;
* no server at all: `closed_port`, where nothing listens, and `lazy_postgres`, a pool pointed
  there (the check is `tests.contract.unreachable.assert_unavailable`).

Real servers come from the session fixtures in `tests/conftest.py`; a backend's server is only
started when a test actually asks for that backend.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from tests.contract.backends import (
    CodeBackend,
    ConsentBackend,
    EphemeralBackend,
    FakeClock,
    LimiterBackend,
    Stores,
)
from tests.redis_topologies import RedisClusterServers, SentinelServers
from tests.servers import create_database, free_port, run_sync
from tokensvc.limits.failures import MemoryFailureLimiter, RedisFailureLimiter
from tokensvc.redis_client import connect
from tokensvc.storage.consents import MemoryConsents, PostgresConsents
from tokensvc.storage.ephemeral import MemoryEphemeral, RedisEphemeral
from tokensvc.storage.memory import MemoryClients, MemoryGrants, MemoryUsers
from tokensvc.storage.memory_codes import MemoryCodes
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.redis_codes import RedisCodes

CONTRACT_REDIS_DB = 9  # not 0: other suites share the session's Redis
POOL_SIZE = 32  # enough connections for the 30-way rotation race to be a real race


# --------------------------------------------------------------------------- codes


@pytest.fixture(scope="session")
def contract_redis_url(redis_url: str) -> str:
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{CONTRACT_REDIS_DB}"))


@pytest.fixture
async def redis_codes(contract_redis_url: str) -> AsyncIterator[RedisCodes]:
    # A pool that allows the 50-way consume race its 50 connections.
    client = aioredis.Redis.from_url(
        contract_redis_url, max_connections=64, socket_timeout=2.0, socket_connect_timeout=1.0
    )
    store = RedisCodes(client)
    try:
        await client.flushdb()
        yield store
    finally:
        await store.close()


@pytest.fixture
async def contract_cluster(redis_cluster: RedisClusterServers) -> AsyncIterator[Any]:
    async with flushed(redis_cluster.url) as client:
        yield client


@pytest.fixture
async def contract_sentinel(redis_sentinel: SentinelServers) -> AsyncIterator[Any]:
    async with flushed(redis_sentinel.url(CONTRACT_REDIS_DB)) as client:
        yield client


# Redis in its three shapes: the fixture that gives a flushed client of each.
REDIS_CLIENTS = {
    "redis": "contract_redis",
    "redis-cluster": "contract_cluster",
    "redis-sentinel": "contract_sentinel",
}


def redis_client(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(REDIS_CLIENTS[request.param])


@pytest.fixture(params=["memory", *REDIS_CLIENTS])
def codes(request: pytest.FixtureRequest) -> CodeBackend:
    if request.param == "memory":
        clock = FakeClock()
        return CodeBackend("memory", MemoryCodes(clock), clock.advance)
    if request.param == "redis":
        return CodeBackend("redis", request.getfixturevalue("redis_codes"), asyncio.sleep)
    return CodeBackend(request.param, RedisCodes(redis_client(request)), asyncio.sleep)


# --------------------------------------------------------------------------- clients/users/grants


@pytest.fixture(scope="module")
def contract_database_url(request: pytest.FixtureRequest, postgres_admin_url: str) -> Iterator[str]:
    """A freshly created and migrated database for this test module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = "contract_" + re.sub(r"[^a-z0-9_]", "_", module.lower())[:50]
    url = create_database(postgres_admin_url, name)
    run_sync(lambda: migrate(url))
    yield url


_TRUNCATE = (
    "TRUNCATE clients, users, grants, refresh_tokens, consents, federations, resources, "
    "logout_deliveries"
)


@pytest.fixture
async def postgres(contract_database_url: str) -> AsyncIterator[Postgres]:
    db = await Postgres.connect(contract_database_url, max_size=POOL_SIZE)
    try:
        async with db.connection() as conn:
            await conn.execute(_TRUNCATE)
        yield db
    finally:
        await db.close()


@pytest.fixture(params=["memory", "postgres"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        clients, grants = MemoryClients(), MemoryGrants()
        clients.on_remove = grants.forget_client  # how memory keeps "remove" cascading

        async def in_memory(grant_id: str) -> int:
            return sum(1 for t in grants._tokens.values() if t.grant_id == grant_id)

        return Stores("memory", clients, MemoryUsers(), grants, in_memory, grants.logouts)
    db: Postgres = request.getfixturevalue("postgres")
    return Stores(
        "postgres", db.clients, db.users, db.grants, lambda g: count_rows(db, g), db.logouts
    )


async def count_rows(db: Postgres, grant_id: str) -> int:
    """Refresh-token rows of a family in Postgres, retired and revoked ones included."""
    async with db.connection() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM refresh_tokens WHERE grant_id = $1", grant_id
        )
    return count


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The URL of a flushed Redis (one server, or a cluster) that two replicas share."""
    redis_client(request)  # flushes it
    if request.param == "redis":
        url: str = request.getfixturevalue("contract_redis_url")
        return url
    return str(request.getfixturevalue("redis_cluster").url)


# --------------------------------------------------------------------------- login stores


@asynccontextmanager
async def flushed(url: str) -> AsyncIterator[Any]:
    """A client of `url` as the services open one, its data flushed (every primary of a
    cluster), pooled widely enough for 30-way races."""
    client = connect(url, max_connections=64)
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def contract_redis(contract_redis_url: str) -> AsyncIterator[aioredis.Redis]:
    async with flushed(contract_redis_url) as client:
        yield client


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def ephemeral(request: pytest.FixtureRequest) -> EphemeralBackend:
    if request.param == "memory":
        clock = FakeClock()
        return EphemeralBackend("memory", MemoryEphemeral(clock), clock.advance)
    client = redis_client(request)
    return EphemeralBackend("redis", RedisEphemeral(client, "session"), asyncio.sleep)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def limiter(request: pytest.FixtureRequest) -> LimiterBackend:
    if request.param == "memory":
        clock = FakeClock()
        return LimiterBackend("memory", MemoryFailureLimiter(clock), clock.advance)
    return LimiterBackend("redis", RedisFailureLimiter(redis_client(request)), asyncio.sleep)


@pytest.fixture(params=["memory", "postgres"])
def consents(request: pytest.FixtureRequest) -> ConsentBackend:
    if request.param == "memory":
        clients, memory = MemoryClients(), MemoryConsents()
        clients.on_remove = memory.forget_client  # how memory keeps "remove" cascading
        return ConsentBackend("memory", memory, clients)
    db: Postgres = request.getfixturevalue("postgres")
    return ConsentBackend("postgres", PostgresConsents(db), db.clients)


# --------------------------------------------------------------------------- unreachable


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture
async def lazy_postgres(closed_port: int) -> AsyncIterator[Postgres]:
    """A pool that connects on first use (`min_size=0`): how a service starts while its
    database is down."""
    db = await Postgres.connect(
        f"postgresql://postgres@127.0.0.1:{closed_port}/postgres", min_size=0
    )
    try:
        yield db
    finally:
        await db.close()
