"""What a per-client rate limit costs at `/token`: client_credentials throughput of a client
without a limit against one with a limit so high it never triggers, against a real Redis.

    .venv/bin/python -m benchmarks.limits_overhead [--redis-url URL] [--requests N]
        [--concurrency C] [--rounds R]

The token service runs in a child process (uvloop, one core, the production `open_stores`
wiring: Redis limits and codes, clients in memory, JSON request logs to /dev/null); this
process drives it over keep-alive HTTP connections, alternating the two clients round by
round. Reported per client: requests per second, the service's CPU time per request (from
/proc, so it holds even when the load generator is the bottleneck), and Redis commands per
request from `INFO commandstats` deltas: `evalsha` calls are round trips, the commands inside
the script (TIME, GET, SET) are listed separately, and the lockout sync (one `evalsha` every
0.25 s, whatever the load) is spread over both. Without `--redis-url` (or
`TOKENSVC_BENCH_REDIS_URL`) a throwaway redis-server is started (tests/servers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the service


def _serve(conn: Connection, redis_url: str) -> None:
    import uvloop

    from tokensvc import logs

    # One JSON line per request, as in production, written nowhere.
    logs.configure("json", open(os.devnull, "wb"))  # noqa: SIM115 - lives as long as we do
    uvloop.run(_serve_async(conn, redis_url))


async def _serve_async(conn: Connection, redis_url: str) -> None:
    from aiohttp import web

    from tokensvc.config import Settings
    from tokensvc.http.apps import public_app
    from tokensvc.registration import MAX_BURST, MAX_RATE, new_client
    from tokensvc.service import TokenService
    from tokensvc.signing.keyfile import generate_jwks
    from tokensvc.signing.keys import keyset_from_jwks
    from tokensvc.wiring.stores import open_stores

    settings = Settings(
        issuer="http://127.0.0.1:8080",
        redis_url=redis_url,
        internal_token="bench-internal-token-0123456789",
    )
    keys = keyset_from_jwks(generate_jwks("ES256"))
    async with open_stores(settings) as stores:
        svc = TokenService(settings, stores, keys)
        creds = {}
        for name, limits in (
            ("unlimited", {}),
            ("limited", {"rate_limit": MAX_RATE, "rate_burst": MAX_BURST}),
        ):
            client, secret = new_client(
                name=name, grant_types=["client_credentials"], scope_list=["api:read"], **limits
            )
            assert await stores.clients.add(client)
            creds[name] = (client.client_id, secret)
        runner = web.AppRunner(public_app(svc), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send({"port": runner.addresses[0][1], "creds": creds})
        await asyncio.Event().wait()  # until the parent terminates us


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the load


@dataclass
class Round:
    client: str
    seconds: float
    requests: int
    cpu: float | None
    commands: dict[str, int]


def _commandstats(r: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _load(url: str, header: str, requests: int, concurrency: int) -> int:
    remaining = requests
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal remaining, ok
            while remaining > 0:
                remaining -= 1
                async with http.post(
                    url,
                    data=b"grant_type=client_credentials",
                    headers={
                        "Authorization": header,
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"unexpected {resp.status}: the limit triggered?")
                    ok += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def _round(
    name: str, url: str, header: str, args: argparse.Namespace, pid: int, r: redis.Redis
) -> Round:
    before_cmds, before_cpu = _commandstats(r), _cpu_seconds(pid)
    started = time.perf_counter()
    done = asyncio.run(_load(url, header, args.requests, args.concurrency))
    seconds = time.perf_counter() - started
    after_cmds, after_cpu = _commandstats(r), _cpu_seconds(pid)
    commands = {k: v - before_cmds.get(k, 0) for k, v in after_cmds.items()}
    commands.pop("info", None)
    cpu = None if before_cpu is None or after_cpu is None else after_cpu - before_cpu
    return Round(name, seconds, done, cpu, {k: v for k, v in commands.items() if v})


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers import RedisServer

    with RedisServer() as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("TOKENSVC_BENCH_REDIS_URL"))
    parser.add_argument("--requests", type=int, default=5000, help="per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="per client, alternating")
    args = parser.parse_args()

    with _redis(args.redis_url) as redis_url:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_serve, args=(child, redis_url), daemon=True)
        server.start()
        try:
            if not parent.poll(30):
                raise SystemExit("the token service did not start within 30 s")
            info = parent.recv()
            assert server.pid is not None
            url = f"http://127.0.0.1:{info['port']}/token"
            headers = {
                name: "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
                for name, (cid, secret) in info["creds"].items()
            }
            r = redis.Redis.from_url(redis_url)
            for name in headers:  # warm up: connections, caches, the script's SHA
                _round(
                    name,
                    url,
                    headers[name],
                    argparse.Namespace(requests=500, concurrency=args.concurrency),
                    server.pid,
                    r,
                )
            rounds = [
                _round(name, url, headers[name], args, server.pid, r)
                for _ in range(args.rounds)
                for name in headers
            ]
        finally:
            server.terminate()
            server.join(5)
    _report(rounds, args)


def _report(rounds: list[Round], args: argparse.Namespace) -> None:
    print(
        f"/token client_credentials, {args.rounds} rounds x {args.requests} requests per "
        f"client, concurrency {args.concurrency}, Redis limits (lockout sync included)"
    )
    summary: dict[str, float] = {}
    for name in ("unlimited", "limited"):
        mine = [r for r in rounds if r.client == name]
        rates = [r.requests / r.seconds for r in mine]
        total = sum(r.requests for r in mine)
        summary[name] = statistics.median(rates)
        cpu = [r.cpu for r in mine if r.cpu is not None]
        cpu_us = f"{sum(cpu) / total * 1e6:7.1f} us CPU/request" if cpu else "CPU n/a"
        commands: dict[str, int] = {}
        for r in mine:
            for k, v in r.commands.items():
                commands[k] = commands.get(k, 0) + v
        per_request = ", ".join(f"{k} {v / total:.4f}" for k, v in sorted(commands.items()))
        print(
            f"  {name:9s}: {summary[name]:8.0f} req/s (median; rounds "
            f"{', '.join(f'{x:.0f}' for x in rates)}), {cpu_us}"
        )
        print(f"  {'':9s}  Redis commands per request: {per_request or 'none'}")
    print(f"  throughput ratio limited/unlimited: {summary['limited'] / summary['unlimited']:.3f}")


if __name__ == "__main__":
    main()
