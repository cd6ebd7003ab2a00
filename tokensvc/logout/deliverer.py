"""Back-channel logout delivery (OIDC Back-Channel Logout 1.0 §2.5): each token-service
process takes due deliveries from the durable `LogoutQueue`, signs a logout token for each
(`jti` the delivery's id, so every retry of one delivery carries the same) and POSTs it as
`logout_token=…` to the client's `backchannel_logout_uri`, looked up at delivery time.

A 200 or 204 is delivered (§2.8). Anything else, a timeout or a refused connection is retried
with exponential backoff (1 s, 2 s, 4 s ... at most MAX_BACKOFF) until GIVE_UP_AFTER seconds
after the session ended; then the delivery is dropped, counted and logged. Deliveries run
concurrently and apart from any request: a slow receiver delays nobody's sign-out. The token
is never logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import structlog

from tokensvc.background import BackgroundTask
from tokensvc.errors import StoreUnavailable
from tokensvc.metrics import Metrics
from tokensvc.models import LogoutDelivery
from tokensvc.signing.tokens import TokenMinter
from tokensvc.storage.protocols import ClientStore, LogoutQueue

log = structlog.get_logger("tokensvc.logout")

POLL = 0.25  # seconds between looks at an empty queue
BATCH = 16  # deliveries taken at once
LEASE = 30.0  # seconds a taken delivery is ours: longer than one attempt can take
TIMEOUT = aiohttp.ClientTimeout(total=5.0, connect=2.0)
MAX_BACKOFF = 300.0
GIVE_UP_AFTER = 3600.0  # seconds after the session ended


def backoff(attempts: int) -> float:
    """Seconds before the next attempt, after `attempts` failed ones before this one."""
    return min(MAX_BACKOFF, 2.0**attempts)


class LogoutDeliverer:
    def __init__(
        self,
        queue: LogoutQueue,
        clients: ClientStore,
        minter: TokenMinter,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        give_up_after: float = GIVE_UP_AFTER,
        poll: float = POLL,
    ) -> None:
        self._queue = queue
        self._clients = clients
        self._minter = minter
        self._metrics = metrics
        self._clock = clock
        self._give_up_after = give_up_after
        self._poll = poll
        self._http: aiohttp.ClientSession | None = None
        self._task = BackgroundTask("tokensvc-logout-delivery")

    def start(self) -> None:
        self._task.start(self._run)

    async def close(self) -> None:
        await self._task.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except StoreUnavailable as exc:
                log.warning("logout queue unavailable", store=exc.store)
                sent = 0
            if sent < BATCH:
                await asyncio.sleep(self._poll)

    async def deliver_due(self) -> int:
        """Take what is due and deliver it (concurrently); how many were taken."""
        due = await self._queue.take_due(self._clock(), LEASE, BATCH)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _deliver(self, delivery: LogoutDelivery) -> None:
        client = await self._clients.get(delivery.client_id)
        uri = client.backchannel_logout_uri if client is not None else None
        if uri is None:
            await self._queue.finish(delivery.delivery_id)
            self._outcome("no_uri", delivery)
            return
        now = self._clock()
        token = self._minter.logout_token(
            client_id=delivery.client_id,
            sub=delivery.sub,
            sid=delivery.sid,
            jti=delivery.delivery_id,
            now=int(now),
        )
        status = await self._post(uri, token)
        if status in (200, 204):
            await self._queue.finish(delivery.delivery_id)
            self._outcome("delivered", delivery, status)
            return
        retry_at = self._clock() + backoff(delivery.attempts)
        if retry_at - delivery.created_at > self._give_up_after:
            await self._queue.finish(delivery.delivery_id)
            self._outcome("gave_up", delivery, status)
        else:
            await self._queue.retry(delivery.delivery_id, retry_at)
            self._outcome("retried", delivery, status)

    async def _post(self, uri: str, token: str) -> int | None:
        """The receiver's status, or None when it could not be reached in time."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._http.post(
                uri, data={"logout_token": token}, allow_redirects=False
            ) as resp:
                return resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def _outcome(self, outcome: str, d: LogoutDelivery, status: int | None = None) -> None:
        self._metrics.backchannel_logouts.labels(outcome).inc()
        log.info(
            "backchannel logout",
            outcome=outcome,
            client_id=d.client_id,
            attempts=d.attempts + 1,
            status=status,
        )
