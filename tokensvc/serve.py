"""Running the token service's listeners until SIGTERM or SIGINT."""

from __future__ import annotations

import structlog

from tokensvc.config import Settings
from tokensvc.http.apps import internal_app, public_app
from tokensvc.http.server import Listener, serve
from tokensvc.service import TokenService
from tokensvc.signing.keys import KeySet
from tokensvc.storage.stores import open_stores

log = structlog.get_logger("tokensvc")


def token_listeners(svc: TokenService) -> list[Listener]:
    s = svc.settings
    return [(public_app(svc), s.host, s.port), (internal_app(svc), s.host, s.internal_port)]


async def run_token_service(settings: Settings, keys: KeySet) -> None:
    async with open_stores(settings) as stores:
        svc = TokenService(settings, stores, keys)
        log.info("token service starting", issuer=settings.issuer, port=settings.port,
                 internal_port=settings.internal_port)
        await serve(token_listeners(svc))
