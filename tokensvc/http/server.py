"""Serving aiohttp applications on their ports until SIGTERM or SIGINT, for every service."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web

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
