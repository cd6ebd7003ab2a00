"""`tokensvc serve login`: the login front-end on `TOKENSVC_LOGIN_PORT`."""

from __future__ import annotations

import os

import structlog

from tokensvc.config import Settings
from tokensvc.http.server import serve
from tokensvc.login.app import login_app, open_login_context
from tokensvc.tracing import traced

log = structlog.get_logger("tokensvc")


async def run_login_service(settings: Settings) -> None:
    async with (
        traced("tokensvc-login", os.environ, calls_out=True) as tracing,
        open_login_context(settings, tracing=tracing) as ctx,
    ):
        log.info(
            "login front-end starting",
            port=settings.login_port,
            token_service=settings.token_internal_url,
        )
        await serve(
            [(login_app(ctx), settings.host, settings.login_port)],
            drain_seconds=settings.drain_seconds,
        )
