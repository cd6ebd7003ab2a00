"""Running the token service's listeners until SIGTERM or SIGINT (one process; `workers` runs
several of these under a supervisor). SIGHUP re-reads the keys file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable

import structlog

from tokensvc.config import Settings
from tokensvc.http.apps import internal_app, public_app
from tokensvc.http.server import Listener, serve
from tokensvc.logout.deliverer import LogoutDeliverer
from tokensvc.service import TokenService
from tokensvc.signing.keys import KeySet
from tokensvc.signing.reload import KeysReloader
from tokensvc.tracing import traced
from tokensvc.wiring.stores import open_stores

log = structlog.get_logger("tokensvc")


@contextlib.asynccontextmanager
async def delivering_logouts(svc: TokenService) -> AsyncIterator[LogoutDeliverer]:
    """The process's back-channel logout deliverer, for as long as the service runs."""
    deliverer = LogoutDeliverer(
        svc.stores.logouts, svc.stores.clients, svc.minter, svc.metrics, clock=svc.clock
    )
    deliverer.start()
    try:
        yield deliverer
    finally:
        await deliverer.close()


def token_listeners(svc: TokenService) -> list[Listener]:
    s = svc.settings
    return [(public_app(svc), s.host, s.port), (internal_app(svc), s.host, s.internal_port)]


async def run_token_service(
    settings: Settings,
    keys: KeySet,
    *,
    keys_raw: bytes | None = None,
    ready: Callable[[], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """`keys_raw`: the bytes `keys` came from (read again at start, so a restarted worker
    catches up with the file); `ready`: called once the listeners accept connections."""
    async with contextlib.AsyncExitStack() as stack:
        tracing = await stack.enter_async_context(traced("tokensvc", os.environ))
        stores = await stack.enter_async_context(open_stores(settings))
        svc = TokenService(settings, stores, keys, tracing=tracing)
        await stack.enter_async_context(delivering_logouts(svc))
        reloader = None
        if settings.keys_file is not None:
            reloader = KeysReloader(
                settings.keys_file,
                keys,
                svc.use_keys,
                loaded=keys_raw,
                interval=settings.keys_reload_seconds,
                clock=svc.clock,
            )
            await reloader.reload("start")
        loop = asyncio.get_running_loop()
        reloading = None
        if reloader is not None:
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
            reloading = asyncio.create_task(reloader.run())
        log.info(
            "token service starting",
            issuer=settings.issuer,
            port=settings.port,
            internal_port=settings.internal_port,
            pid=os.getpid(),
        )
        try:
            await serve(
                token_listeners(svc),
                started=ready,
                drain_seconds=settings.drain_seconds,
                reuse_port=reuse_port,
            )
        finally:
            if reloading is not None:
                loop.remove_signal_handler(signal.SIGHUP)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late SIGHUP must not kill
                reloading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reloading
