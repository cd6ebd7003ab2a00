"""Redis SIGKILLed in the middle of a load of code exchanges, then started again on its port
(issue 7). Redis keeps nothing on disk here, so every code minted before the kill is gone:
that must read as `invalid_grant`, never as a second exchange. Meanwhile only `503
temporarily_unavailable` may stand for the outage; fresh codes must be exchanged again within
5 s of Redis accepting connections, and from then on nothing may meet a 503, not even a burst
that needs every connection the service's Redis pool held when Redis died."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from tests.faults.load import Load, Service, recovery
from tests.servers import RedisServer

TIMEOUT = 45.0  # seconds for the whole scenario, start-up included
BEFORE, DOWN, AFTER = 1.0, 0.5, 1.0  # seconds of load before the kill, down, after recovery
PEAK = 64  # codes exchanged at once before the kill: the service's Redis pool grows


async def test_redis_killed_during_code_exchanges(
    own_redis: RedisServer,
    shared_database: str,
    launch: Callable[[str, str], Service],
    http: aiohttp.ClientSession,
) -> None:
    service = launch(shared_database, own_redis.url)
    async with asyncio.timeout(TIMEOUT):
        await service.start()
        load = Load(service, http)
        peak = [await load.mint() for _ in range(PEAK)]
        async with load.running(exchangers=8):
            await asyncio.sleep(BEFORE)
            await asyncio.gather(*(load.exchange(code) for code in peak if code))
            served_before = load.ledger.count("codes", 200)
            await asyncio.to_thread(own_redis.kill)
            killed = load.ledger.mints[:]  # codes minted up to here died with Redis
            await asyncio.sleep(DOWN)
            await asyncio.to_thread(own_redis.start)
            await recovery(
                load.fresh_code_exchanged,
                time.monotonic(),
                "exchanging fresh codes after Redis came back",
            )
            await asyncio.sleep(AFTER)
        # Every code minted before the kill died with Redis: sent again now, all at once (a
        # larger peak than before the kill), each is refused, and none meets a 503.
        lost = [a.body["code"] for a in killed if a.status == 201]
        again = await asyncio.gather(*(load.exchange(code) for code in lost))

    load.assert_sound()  # no code was served twice: not before the kill, nor after it
    assert served_before > 0 and load.ledger.count("codes", 503) > 0, "the kill missed the load"
    assert lost
    unavailable = [a for a in again if a.status == 503]
    assert not unavailable, (
        f"{len(unavailable)} of {len(again)} got 503 after recovery: "
        "pooled connections to the killed Redis were used"
    )
    assert all(a.status == 400 and a.error == "invalid_grant" for a in again), again
    service.assert_logs_clean(load.secrets())
