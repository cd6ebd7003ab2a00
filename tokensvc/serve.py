"""Running the token service's listeners until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web

from tokensvc.config import Settings
from tokensvc.http.apps import internal_app, public_app
from tokensvc.service import TokenService
from tokensvc.signing.keys import KeySet
from tokensvc.storage.stores import Stores, open_stores

log = structlog.get_logger("tokensvc")

Listener = tuple[web.Application, str, int]


async def serve(
    listeners: Sequence[Listener],
    *,
    started: Callable[[], Awaitable[None] | None] | None = None,
    shutdown_timeout: float = 10.0,
) -> None:
    """Serve each app on its host and port until a stop signal, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        for app, host, port in listeners:
            runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                   shutdown_timeout=shutdown_timeout)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port, backlog=1024).start()
        if started is not None:
            result = started()
            if result is not None:
                await result
        await stop.wait()
        log.info("stopping")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def token_listeners(svc: TokenService) -> list[Listener]:
    s = svc.settings
    return [(public_app(svc), s.host, s.port), (internal_app(svc), s.host, s.internal_port)]


async def run_token_service(
    settings: Settings, keys: KeySet, stores: Stores | None = None,
    started: Callable[[], Awaitable[None] | None] | None = None,
) -> None:
    if stores is not None:
        await serve(token_listeners(TokenService(settings, stores, keys)), started=started)
        return
    async with open_stores(settings) as opened:
        svc = TokenService(settings, opened, keys)
        log.info("token service starting", issuer=settings.issuer, port=settings.port,
                 internal_port=settings.internal_port)
        await serve(token_listeners(svc), started=started)
