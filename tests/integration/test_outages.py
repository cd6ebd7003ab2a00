"""A store that stops answering gives 503 temporarily_unavailable, loses nothing, and the
service recovers by itself once the store is back. Each test stops its own real servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.harness import Clock, Harness, make_service, start
from tests.servers import PostgresServer, RedisServer
from tokensvc.signing.keys import KeySet
from tokensvc.storage.cache import CachedClients
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.redis_codes import RedisCodes
from tokensvc.wiring.stores import Stores

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def own_servers() -> AsyncIterator[tuple[RedisServer, PostgresServer]]:
    with RedisServer() as redis_server, PostgresServer() as pg_server:
        yield redis_server, pg_server


@pytest.fixture
async def outage_harness(
    own_servers: tuple[RedisServer, PostgresServer], es256_keys: KeySet, log_sink
) -> AsyncIterator[Harness]:
    redis_server, pg_server = own_servers
    await migrate(pg_server.url)
    pg = await Postgres.connect(pg_server.url)
    codes = RedisCodes.from_url(redis_server.url)
    # As `open_stores` builds them in production: clients behind the in-process cache.
    clients = CachedClients(pg.clients, ttl=30)
    stores = Stores(
        codes=codes, clients=clients, users=pg.users, grants=pg.grants, logouts=pg.logouts
    )
    svc = make_service(stores, es256_keys, Clock(time.time()))
    runners, public_url, internal_url = await start(svc)
    mark = log_sink.mark()
    async with aiohttp.ClientSession() as http:
        harness = Harness(svc, public_url, internal_url, http)
        try:
            yield harness
        finally:
            for runner in runners:
                await runner.cleanup()
            await codes.close()
            await pg.close()
    log_sink.assert_clean(mark, harness.secrets)


def assert_unavailable(reply) -> None:
    assert reply.status == 503, reply.body
    assert reply.body["error"] == "temporarily_unavailable"
    assert reply.headers["Retry-After"]


async def test_redis_down_then_back(
    outage_harness: Harness, own_servers: tuple[RedisServer, PostgresServer]
) -> None:
    harness = outage_harness
    redis_server, _ = own_servers
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)

    redis_server.stop()
    assert_unavailable(await harness.exchange(client, secret, code, verifier))
    assert_unavailable(await harness.request_code(client))
    ready = await harness.get("/readyz")
    assert ready.status == 503 and ready.body["stores"]["codes"] is False
    # The machine fast path does not touch Redis and keeps serving.
    cc = await harness.token(client, secret, grant_type="client_credentials")
    assert cc.status == 200

    redis_server.restart()  # an empty Redis: the code minted before is gone, as it would be
    assert (await harness.get("/readyz")).status == 200
    code, verifier = await harness.mint_code(client)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body


async def test_postgres_down_then_back(
    outage_harness: Harness, own_servers: tuple[RedisServer, PostgresServer]
) -> None:
    harness = outage_harness
    _, pg_server = own_servers
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    first = await harness.exchange(client, secret, code, verifier)
    refresh = first.body["refresh_token"]

    pg_server.stop()
    assert_unavailable(
        await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    )
    code, verifier = await harness.mint_code(client)  # Redis still works
    assert_unavailable(await harness.exchange(client, secret, code, verifier))
    # An unknown client cannot be looked up.
    reply = await harness.post_token(
        {"grant_type": "client_credentials"}, basic=("not-cached", "x")
    )
    assert_unavailable(reply)
    assert (await harness.get("/readyz")).status == 503

    pg_server.restart()
    assert (await harness.get("/readyz")).status == 200
    # Nothing was lost: the refresh token presented during the outage still rotates once.
    reply = await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    assert reply.status == 200, reply.body
