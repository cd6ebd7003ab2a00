"""`tokensvc serve login`: the login front-end on `TOKENSVC_LOGIN_PORT`."""

from __future__ import annotations

import structlog

from tokensvc.config import Settings
from tokensvc.http.server import serve
from tokensvc.login.app import login_app, open_login_context

log = structlog.get_logger("tokensvc")


async def run_login_service(settings: Settings) -> None:
    async with open_login_context(settings) as ctx:
        log.info(
            "login front-end starting",
            port=settings.login_port,
            token_service=settings.token_internal_url,
        )
        await serve(
            [(login_app(ctx), settings.host, settings.login_port)],
            drain_seconds=settings.drain_seconds,
        )
