"""Fixtures of the fault tests: servers of their own for whatever a test kills, the shared
session servers for the rest, and the service under test, always stopped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.e2e.procs import base_env, migrated_database, run
from tests.faults.load import Service
from tests.servers import PostgresServer, RedisServer

FAULTS_REDIS_DB = 13  # not 0: other suites share the session's Redis; no other module uses 13


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to kill."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A migrated Postgres of this test's own, to restart and crash."""
    with PostgresServer() as server:
        run(["migrate"], base_env(TOKENSVC_DATABASE_URL=server.url)).ok()
        yield server


@pytest.fixture
def shared_database(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database on the session's Postgres, for tests that do not stop it."""
    with migrated_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def shared_redis(redis_url: str) -> str:
    """The session's Redis, for tests that do not stop it."""
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{FAULTS_REDIS_DB}"))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[str, str], Service]]:
    """Makes the service under test on the given stores; every process of it is killed at the
    end, whatever happened."""
    made: list[Service] = []

    def make(database_url: str, redis_url: str) -> Service:
        made.append(Service(database_url, redis_url, tmp_path))
        return made[-1]

    try:
        yield make
    finally:
        for service in made:
            service.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """No limit on connections: a burst reaches the service all at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session
