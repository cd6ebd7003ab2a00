"""Readiness (`/readyz` of both services): which dependencies answer in time.

One rule for every listener: a dependency is ready when its ping returns within the limit
without raising `StoreUnavailable` and without answering `False` (the login front-end's
internal-API ping reports refusal that way). Pings run concurrently, so one slow store costs
the probe `limit` seconds, not the sum of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from tokensvc.errors import StoreUnavailable

Ping = Callable[[], Awaitable[object]]
LIMIT = 2.0  # seconds: inside the readiness probes' timeouts in k8s/


async def _answers(ping: Ping, limit: float) -> bool:
    try:
        answer = await asyncio.wait_for(ping(), limit)
    except (StoreUnavailable, TimeoutError):
        return False
    return answer is not False


async def readiness(pings: Mapping[str, Ping], limit: float = LIMIT) -> dict[str, bool]:
    """`{name: answered}` for every ping, all asked at once."""
    results = await asyncio.gather(*(_answers(ping, limit) for ping in pings.values()))
    return dict(zip(pings, results, strict=True))
