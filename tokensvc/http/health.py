"""`/healthz` says the process runs; `/readyz` says every store answers (for load balancers)."""

from __future__ import annotations

from aiohttp import web

from tokensvc.http.appkeys import SERVICE
from tokensvc.http.responses import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    stores = await request.app[SERVICE].stores.readiness()
    ready = all(stores.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "stores": stores}, 200 if ready else 503
    )
