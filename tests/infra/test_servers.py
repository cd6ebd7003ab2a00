"""The throwaway servers really start, stop, restart on the same port, and clean up."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.servers import (
    PostgresServer,
    RedisServer,
    create_database,
    create_database_async,
    find_binary,
    free_port,
)


async def redis_ping(url: str) -> bool:
    # No retries: a stopped server should fail fast.
    client = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=2)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def pg_fetchval(url: str, query: str) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One cluster for the module: initdb is the slow part."""
    with PostgresServer() as server:
        yield server


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_find_binary_names_the_package_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="redis-tools-nope"):
        find_binary("no-such-binary-tokensvc", "redis-tools-nope", install=False)


@pytest.mark.asyncio
async def test_redis_start_stop_restart_same_port() -> None:
    with RedisServer() as server:
        port = server.port
        assert port not in (6379,)
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert await redis_ping(server.url)

        server.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await redis_ping(server.url)

        server.restart()
        assert server.port == port
        assert await redis_ping(server.url)
        tmp = server.dir
        assert tmp is not None and tmp.is_dir()
    assert not tmp.exists()
    assert server.dir is None
    with pytest.raises(redis.exceptions.ConnectionError):
        await redis_ping(server.url)


@pytest.mark.asyncio
async def test_redis_restart_while_running() -> None:
    with RedisServer() as server:
        server.restart()
        assert await redis_ping(server.url)


@pytest.mark.asyncio
async def test_postgres_select_1(postgres: PostgresServer) -> None:
    assert postgres.port != 5432
    assert postgres.url == f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    assert await pg_fetchval(postgres.url, "SELECT 1") == 1
    assert await pg_fetchval(postgres.url, "SHOW fsync") == "on"
    assert await pg_fetchval(postgres.url, "SHOW synchronous_commit") == "on"


@pytest.mark.asyncio
async def test_postgres_takes_more_settings_and_keeps_durability() -> None:
    """The benchmark kit's cluster: its own settings on top, fsync and durable commits kept."""
    from benchmarks.spawn import POSTGRES_SETTINGS

    with PostgresServer(settings=POSTGRES_SETTINGS) as server:
        for name, value in POSTGRES_SETTINGS.items():
            assert await pg_fetchval(server.url, f"SHOW {name}") == value
        assert await pg_fetchval(server.url, "SHOW fsync") == "on"
        assert await pg_fetchval(server.url, "SHOW synchronous_commit") == "on"


@pytest.mark.asyncio
async def test_postgres_stop_restart_keeps_data(postgres: PostgresServer) -> None:
    url = await create_database_async(postgres.url, "restart_check")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE t (v text)")
        await conn.execute("INSERT INTO t VALUES ('kept')")
    finally:
        await conn.close()

    postgres.stop()
    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=5)

    port = postgres.port
    postgres.restart()
    assert postgres.port == port
    assert await pg_fetchval(url, "SELECT v FROM t") == "kept"


def test_create_database_sync_gives_clean_database(postgres: PostgresServer) -> None:
    url = create_database(postgres.url, "clean_check")
    assert url.endswith(f":{postgres.port}/clean_check")

    async def make_and_recreate() -> object:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE leftover (x int)")
        finally:
            await conn.close()
        await create_database_async(postgres.url, "clean_check")  # drops + recreates
        return await pg_fetchval(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'")

    assert asyncio.run(make_and_recreate()) == 0


@pytest.mark.asyncio
async def test_create_database_rejects_bad_names(postgres: PostgresServer) -> None:
    with pytest.raises(ValueError):
        await create_database_async(postgres.url, 'x"; DROP DATABASE postgres; --')


def test_postgres_close_removes_dir_and_stops() -> None:
    server = PostgresServer().start()
    tmp = server.dir
    assert tmp is not None
    pid = int((tmp / "data" / "postmaster.pid").read_text().split()[0])
    server.close()
    assert not tmp.exists()
    assert _gone(pid)


def _gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie awaiting its reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


@pytest.mark.asyncio
async def test_session_fixtures_use_private_servers(
    redis_url: str, postgres_admin_url: str
) -> None:
    if "TOKENSVC_TEST_REDIS_URL" not in os.environ:
        assert ":6379/" not in redis_url
        assert await redis_ping(redis_url)
    if "TOKENSVC_TEST_DATABASE_URL" not in os.environ:
        assert ":5432/" not in postgres_admin_url
        assert await pg_fetchval(postgres_admin_url, "SELECT 1") == 1
