"""A token service for third-party clients, over each storage backend (the integration
suite's stores), whose issuer is its own URL.

`tests.harness.start` binds port 0 and learns the port afterwards, while the service's issuer
(discovery's `issuer`, the endpoints it names, every token's `iss`) is fixed when the service
is made; a client that checks discovery, as openid-client does, refuses an issuer other than
the URL it asked. So the public socket is bound first and the service made for its port.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.harness import INTERNAL_TOKEN, Clock, Harness, make_service
from tests.integration.conftest import (  # the integration suite's backends, re-exported
    backend,
    clock,
    es256_keys,
    module_database,
    real_backend,
    stores,
)
from tokensvc.http.apps import internal_app, public_app
from tokensvc.http.server import app_runner
from tokensvc.signing.keys import KeySet
from tokensvc.wiring.stores import Stores

__all__ = [
    "backend",
    "clock",
    "es256_keys",
    "live_harness",
    "module_database",
    "real_backend",
    "service_settings",
    "stores",
]


@pytest.fixture
def service_settings() -> dict[str, Any]:
    """Settings of the live service beyond the harness's (none); a test module overrides this
    fixture to run its tests against another configuration (server DPoP nonces, say)."""
    return {}


@pytest.fixture
async def live_harness(
    stores: Stores,
    es256_keys: KeySet,
    clock: Clock,
    log_sink: Any,
    service_settings: dict[str, Any],
) -> AsyncIterator[Harness]:
    """A token service on loopback whose issuer is `harness.public_url` (plain http), with
    `service_settings`; the logs are checked for the secrets it handled at the end, as the
    integration suite does."""
    mark = log_sink.mark()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    public_url = f"http://{host}:{port}"
    svc = make_service(stores, es256_keys, clock, **{**service_settings, "issuer": public_url})
    runners: list[web.AppRunner] = []
    http = aiohttp.ClientSession()
    try:
        public = app_runner(public_app(svc))
        await public.setup()
        runners.append(public)
        await web.SockSite(public, sock).start()
        internal = app_runner(internal_app(svc))
        await internal.setup()
        runners.append(internal)
        await web.TCPSite(internal, "127.0.0.1", 0).start()
        ihost, iport = internal.addresses[0][:2]
        harness = Harness(svc, public_url, f"http://{ihost}:{iport}", http, raw=stores)
        harness.remember(INTERNAL_TOKEN)
        yield harness
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await http.close()
        sock.close()
    log_sink.assert_clean(mark, harness.secrets)
