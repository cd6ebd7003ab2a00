"""Serving aiohttp applications on their ports until SIGTERM or SIGINT, for every service.

Stopping, in order (SIGTERM):

1. `/readyz` answers 503 at once (`Lifecycle.draining`), and every response says
   `Connection: close`, so a load balancer takes the process out of rotation and keep-alive
   clients reconnect elsewhere;
2. for `drain_seconds` new connections are still accepted and served, because a load balancer
   notices a failing readiness probe only after its next probe (a second signal cuts this
   short; SIGINT, an operator's Ctrl-C, skips it);
3. the listeners close, requests in flight complete (up to `shutdown_timeout`), idle
   connections close, and the applications' cleanup runs; the caller then closes its pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import structlog
from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from tokensvc import collector
from tokensvc.errors import InvalidRequest, ServerError
from tokensvc.http.responses import NO_STORE

log = structlog.get_logger("tokensvc")

Listener = tuple[web.Application, str, int]


class Lifecycle:
    """What a process's applications may ask about its shutdown (see `LIFECYCLE`)."""

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
# An application served over HTTPS sets this (`tokensvc.http.tls`); the others serve HTTP.
TLS_CONTEXT = web.AppKey("tls_context", ssl.SSLContext)


class ProtocolLog(logging.Logger):
    """Where aiohttp reports what it refused before any handler ran (a malformed or oversized
    request line or header, a body that does not decode) or a connection that broke: one
    structlog line naming the error's class, instead of a multi-line traceback on stderr for
    every hostile request, and never the offending bytes (they can hold a credential)."""

    def __init__(self) -> None:
        super().__init__("tokensvc.http.protocol")

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        log.warning("bad http request", error=type(exc).__name__ if exc else "unknown")

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.exception(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        log.warning("http server", message=str(msg))

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        return None  # e.g. TLS or random bytes on the port: expected noise, not news


# What aiohttp answers itself (`refusal`): every listener's, the login front-end's too, so the
# headers its pages send (`tokensvc.login.app.SECURITY_HEADERS`; no styles in this body).
REFUSAL_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_BAD_REQUEST = orjson.dumps({"error": InvalidRequest.error, "error_description": "Bad request."})
_SERVER_ERROR = orjson.dumps(
    {"error": ServerError.error, "error_description": ServerError.default_description}
)


def refusal(status: int) -> web.Response:
    """The fixed answer to what aiohttp refuses before any handler runs (`status` 400) or to an
    error no middleware caught (500, 504); the connection closes after it."""
    body = _BAD_REQUEST if status < 500 else _SERVER_ERROR
    response = web.Response(
        body=body, status=status, content_type="application/json", headers=REFUSAL_HEADERS
    )
    response.force_close()
    return response


class _Protocol(RequestHandler):
    """aiohttp's connection protocol, whose own error responses are `refusal`s: aiohttp's 400
    body quotes the request line or header the parser choked on (a whole `Authorization:`
    line, a code in a query), so it would send a credential back through any proxy or log
    that keeps responses."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's logging (to ProtocolLog), and its ConnectionError once output has started
        super().handle_error(request, status, exc)
        return refusal(status)


class _Server(web.Server):
    """aiohttp's server, making a `_Protocol` per connection (`Server.__call__` names
    `RequestHandler`: aiohttp has no setting for the protocol class)."""

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class _AppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, only `__call__` differs
        return server


def app_runner(app: web.Application, *, shutdown_timeout: float = 10.0) -> web.AppRunner:
    """The runner every listener uses, with aiohttp's request limits spelt out (README,
    *Limits*): a request line up to 8190 bytes, at most 128 headers of up to 8190 bytes each;
    beyond them aiohttp answers 400 (a `refusal`, never aiohttp's body, which quotes the
    offending bytes) and closes the connection. The body limit is each application's
    `client_max_size` (413)."""
    return _AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        logger=ProtocolLog(),
        max_line_size=MAX_LINE,
        max_field_size=MAX_FIELD,
        max_headers=MAX_HEADERS,
    )


MAX_LINE = 8190  # bytes of the request line
MAX_FIELD = 8190  # bytes of one header
MAX_HEADERS = 128  # headers per request


def close_while_draining(request: web.Request, response: web.StreamResponse) -> None:
    """While draining, every response closes its connection (called by the `canonical`
    middleware: a plain call, cheaper than an `on_response_prepare` signal per response)."""
    lifecycle = request.app.get(LIFECYCLE)
    if lifecycle is not None and lifecycle.draining:
        response.force_close()
        response.headers[hdrs.CONNECTION] = "close"


async def serve(
    listeners: Sequence[Listener],
    *,
    started: Callable[[], Awaitable[None] | None] | None = None,
    shutdown_timeout: float = 10.0,
    drain_seconds: float = 0.0,
    reuse_port: bool = False,
) -> None:
    """Serve each app on its host and port until a stop signal, then shut down gracefully.

    `reuse_port` binds with SO_REUSEPORT, so that sibling worker processes share the ports.
    """
    lifecycle = Lifecycle()
    stop, hurry = asyncio.Event(), asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    runners: list[web.AppRunner] = []
    try:
        for app, host, port in listeners:
            app[LIFECYCLE] = lifecycle
            runner = app_runner(app, shutdown_timeout=shutdown_timeout)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(
                runner,
                host,
                port,
                backlog=1024,
                reuse_port=reuse_port,
                ssl_context=app.get(TLS_CONTEXT),  # HTTPS where the app asks for it
            ).start()
        collector.settle()  # start-up is over: its objects are never scanned again
        if started is not None:
            result = started()
            if result is not None:
                await result
        await stop.wait()
        lifecycle.draining = True
        if received[0] == signal.SIGTERM and drain_seconds > 0:
            log.info("draining", seconds=drain_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), drain_seconds)
        log.info("stopping")
    finally:
        lifecycle.draining = True
        for runner in runners:  # stop accepting on every port before waiting on any
            for site in list(runner.sites):
                await site.stop()
        for runner in reversed(runners):
            await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
