"""The token service SIGKILLed (its whole process group) in the middle of a load of code
exchanges and refreshes, then started again on the same stores (issue 7).

Requests in flight just lose their connection, and what they presented may be consumed
without an answer. To make sure that happens, Postgres writes are held back on a table lock
for a moment before the kill: code exchanges have consumed their code in Redis and wait to
store the grant, rotations wait to be committed; the dead process's statements then commit
when the lock goes. A code consumed that way must answer `invalid_grant` when re-sent, never a
second 200; a refresh token whose rotation committed unanswered gets that same successor when
re-sent within the grace; every refresh token handed out with a 200 still works; and the new
process serves (ready, a fresh code exchanged) within 5 s of being started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import asyncpg

from tests.faults.load import Answer, Load, Service, recovery
from tokensvc.opaque import lookup_hash

TIMEOUT = 45.0  # seconds for the whole scenario, start-up included
CHAINS, EXCHANGERS = 6, 6
BEFORE, HOLD, AFTER = 1.0, 0.3, 1.0  # seconds of load before the lock, held, after restart
# Of the given refresh tokens, those that a rotation requested before `to_timestamp($2)` made.
_MADE_BEFORE = """
SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1) AND created_at < to_timestamp($2)
"""


def unanswered(book: dict[str, list[Answer]]) -> dict[str, list[Answer]]:
    """What the kill cut off before any answer: the first answer is a lost connection."""
    return {presented: answers for presented, answers in book.items() if answers[0].status is None}


async def test_service_killed_during_exchanges_and_refreshes(
    shared_database: str,
    shared_redis: str,
    launch: Callable[[str, str], Service],
    http: aiohttp.ClientSession,
) -> None:
    service = launch(shared_database, shared_redis)
    async with asyncio.timeout(TIMEOUT):
        await service.start()
        load = Load(service, http)
        chains = await load.first_tokens(CHAINS)
        db = await asyncpg.connect(shared_database)
        try:
            async with load.running(exchangers=EXCHANGERS, chains=chains):
                await asyncio.sleep(BEFORE)
                async with db.transaction():  # reads pass, writes wait
                    await db.execute("LOCK TABLE refresh_tokens IN EXCLUSIVE MODE")
                    await asyncio.sleep(HOLD)
                    killed_at = time.time()
                    await service.kill()
                spawned = await service.start()
                await recovery(load.serving, spawned, "the restarted service")
                await asyncio.sleep(AFTER)

            # Codes whose exchange the kill cut off and that no racer got: consumed by the
            # request that lost its answer (nothing else consumes one), so refused now.
            consumed = [
                code
                for code, answers in load.ledger.codes.items()
                if any(a.status is None for a in answers)
                and not any(a.status == 200 for a in answers)
            ]
            assert consumed, "the kill cut off no code exchange"
            again = await asyncio.gather(*(load.exchange(code) for code in consumed))
            assert all(a.status == 400 and a.error == "invalid_grant" for a in again), again
            # Refresh tokens whose rotation the kill cut off were answered after the restart,
            # some with the successor the dead process had committed (a repeat within grace).
            successors = [
                next((a.body["refresh_token"] for a in answers if a.status == 200), None)
                for answers in unanswered(load.ledger.refreshes).values()
            ]
            assert successors, "the kill cut off no refresh"
            assert None not in successors, "a refresh cut off by the kill never got a 200"
            committed_unanswered = await db.fetchval(
                _MADE_BEFORE, [lookup_hash(s) for s in successors], killed_at
            )
        finally:
            await db.close()

        load.assert_sound(broken_connections=True)
        assert committed_unanswered > 0, "no rotation was committed without an answer"
        await load.assert_durable()
    service.assert_logs_clean(load.secrets())
