"""`/healthz` says the process runs (and which one: `pid`, one per worker); `/readyz` says every
store answers and the process is not shutting down (for load balancers)."""

from __future__ import annotations

import os

from aiohttp import web

from tokensvc.http.appkeys import SERVICE
from tokensvc.http.responses import json_response
from tokensvc.http.server import LIFECYCLE


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    lifecycle = request.app.get(LIFECYCLE)
    if lifecycle is not None and lifecycle.draining:
        return json_response({"status": "draining"}, 503)
    stores = await request.app[SERVICE].stores.readiness()
    ready = all(stores.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "stores": stores}, 200 if ready else 503
    )
