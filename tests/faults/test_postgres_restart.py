"""Postgres restarted (fast shutdown) and then crashed (immediate shutdown: no checkpoint, WAL
replay on start) in the middle of a load of refreshes (issue 7). A 200 means the rotation was
committed: every refresh token handed out must still refresh afterwards, each presented token
has exactly one successor however often it was re-sent, only `503 temporarily_unavailable`
may stand for the outage, and refreshes succeed again within 5 s of Postgres accepting
connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from tests.faults.load import Load, Service, recovery
from tests.servers import PostgresServer

TIMEOUT = 60.0  # seconds for the whole scenario, start-up included
CHAINS = 8
BEFORE, DOWN, AFTER = 1.0, 0.3, 1.0  # seconds of load before each stop, down, at the end


async def test_postgres_restarted_and_crashed_during_refreshes(
    own_postgres: PostgresServer,
    shared_redis: str,
    launch: Callable[[str, str], Service],
    http: aiohttp.ClientSession,
) -> None:
    service = launch(own_postgres.url, shared_redis)
    async with asyncio.timeout(TIMEOUT):
        await service.start()
        load = Load(service, http)
        chains = await load.first_tokens(CHAINS + 1)
        probe = load.refresh_probe(chains.pop())
        outages: dict[str, int] = {}
        async with load.running(chains=chains):
            for name, stop in (("fast", own_postgres.stop), ("immediate", own_postgres.crash)):
                await asyncio.sleep(BEFORE)
                unavailable = load.ledger.count("refreshes", 503)
                await asyncio.to_thread(stop)
                await asyncio.sleep(DOWN)
                await asyncio.to_thread(own_postgres.start)
                await recovery(probe, time.monotonic(), f"refreshing after a {name} restart")
                outages[name] = load.ledger.count("refreshes", 503) - unavailable
            await asyncio.sleep(AFTER)
        load.assert_sound()
        assert all(outages.values()), f"a stop missed the load: {outages}"
        # the newest token of every chain, and of the probe's, survived both stops
        assert await load.assert_durable() == CHAINS + 1
    service.assert_logs_clean(load.secrets())
