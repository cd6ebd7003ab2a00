"""The floor: a bare aiohttp + uvloop `/token` that reads the form body and answers a fixed JSON
body. It is what any Python aiohttp token endpoint could at best reach on this machine, and,
driven by the same generator, the generator's own ceiling.

    .venv/bin/python -m benchmarks.floor [--host 127.0.0.1] [--port 9000]

`python -m benchmarks` starts it itself, pinned to the token service's core(s). Run it by hand
next to a remote target (same kind of node) and pass `--floor-url` to compare against it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
from aiohttp import web

# The size of a client_credentials response of tokensvc (an ES256 access token of ~450 bytes),
# shaped like a JWT (the generators count a 200 without one as an error).
BODY = orjson.dumps(
    {
        "access_token": ".".join(("e" * 36, "e" * 336, "e" * 86)),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "api:read",
    }
)
HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def token(request: web.Request) -> web.Response:
    await request.post()  # parse the form, as a real /token must
    return web.Response(body=BODY, content_type="application/json", headers=HEADERS)


def floor_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/token", token)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(floor_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description="the floor server for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
