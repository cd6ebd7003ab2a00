"""The soak's load: one process (uvloop), open loop at a fixed rate for as long as the soak
lasts, each request's grant drawn at random by weight and its credential made when it is due:

* client_credentials: the same request every time (it spends nothing);
* authorization_code: a code from `CodeFeed`, which mints codes through the internal API all
  along the run, a few seconds ahead of use (they expire: 60 s by default), never up front;
* refresh_token: the latest token of a chain from `Chains`. The successor in each answer goes
  back into the chain, as a real client keeps its newest token; every code exchanged starts a
  chain, and past `chains` of them the longest idle one is abandoned (the user went away).

Latency is measured from the time a request was due (no coordinated omission, as in
generators/pyload.py). The parent (soak/cli.py) gets one message per window and reads memory
and store sizes at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson

from benchmarks.generators.common import OK_STATUS
from benchmarks.generators.connpool import ConnectionPool
from benchmarks.generators.httpclient import ConnectionLost, Endpoint, build_request
from benchmarks.generators.pyload import _Stats
from benchmarks.histogram import bucket
from benchmarks.prepare import (
    Client,
    Issuer,
    Line,
    PrepareError,
    client_credentials_line,
    code_line,
    refresh_line,
)

DRAIN_SECONDS = 10.0
MINT_EVERY = 0.25  # seconds between top-ups of the code feed
CODE_MARGIN = 10.0  # a code older than its TTL minus this is dropped unsent
READ_TIMEOUT = 60.0  # how long the parent may take to read the last window


@dataclass(frozen=True)
class LoadPlan:
    token_url: str
    internal_url: str | None
    internal_token: str | None
    machine: Client
    web: Client | None
    weights: dict[str, float]  # grant -> weight (any scale)
    rate: float
    duration: float  # a whole number of windows
    window: float
    max_connections: int = 64
    chains: int = 1000
    code_lead: float = 3.0  # seconds of codes kept minted ahead
    params: dict[str, str] = field(default_factory=dict)
    seed: int = 7
    cores: tuple[int, ...] = ()

    def share(self, grant: str) -> float:
        return self.weights.get(grant, 0.0) / sum(self.weights.values())


class WindowStats(_Stats):
    """The generator's counts for one window, plus latency per grant and what could not be
    sent for want of a credential."""

    __slots__ = ("by_grant", "starved")

    def __init__(self) -> None:
        super().__init__()
        self.by_grant: dict[str, dict[int, int]] = {}
        self.starved: dict[str, int] = {}

    def record_grant(self, grant: str, status: int, body: bytes, seconds: float) -> None:
        self.record(status, body, seconds)
        hist = self.by_grant.setdefault(grant, {})
        b = bucket(int(seconds * 1e6))
        hist[b] = hist.get(b, 0) + 1

    def dump(self) -> dict[str, Any]:
        return {**super().dump(), "by_grant": self.by_grant, "starved": self.starved}


class CodeFeed:
    """Authorization codes minted through `POST /internal/codes` as the run goes, about
    `lead` seconds of them ahead of use; codes near their expiry are dropped unsent."""

    def __init__(self, issuer: Issuer, client: Client, per_second: float, lead: float) -> None:
        self.issuer = issuer
        self.client = client
        self.target = math.ceil(per_second * lead) + 8
        self.codes: deque[tuple[float, str, str]] = deque()  # (minted at, code, verifier)
        self.minted = 0
        self.expired = 0
        self.failures = 0
        self.last_failure = ""

    def take(self) -> tuple[str, str] | None:
        ttl = self.issuer.code_ttl
        if ttl is not None:
            oldest = time.monotonic() - max(1.0, ttl - CODE_MARGIN)
            while self.codes and self.codes[0][0] < oldest:
                self.codes.popleft()
                self.expired += 1
        if not self.codes:
            return None
        _, code, verifier = self.codes.popleft()
        return code, verifier

    async def top_up(self, http: aiohttp.ClientSession) -> None:
        want = self.target - len(self.codes)
        if want <= 0:
            return
        minted = await self.issuer.mint_codes(self.client, want, http)
        now = time.monotonic()
        self.codes.extend((now, code, verifier) for code, verifier in minted)
        self.minted += len(minted)

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Top up until cancelled; a failed mint is counted and tried again."""
        while True:
            try:
                await self.top_up(http)
            except (
                TimeoutError,
                PrepareError,
                aiohttp.ClientError,
                OSError,
                ValueError,
                KeyError,
            ) as exc:
                self.failures += 1
                self.last_failure = " ".join(str(exc).split())[:300] or type(exc).__name__
            await asyncio.sleep(MINT_EVERY)


class Chains:
    """Refresh-token chains: the latest token of each idle chain, the longest idle first."""

    def __init__(self, limit: int) -> None:
        self.idle: deque[str] = deque(maxlen=max(1, limit))
        self.started = 0
        self.rotated = 0
        self.broken = 0
        self.abandoned = 0

    def take(self) -> str | None:
        return self.idle.popleft() if self.idle else None

    def put(self, token: str, *, new: bool) -> None:
        if len(self.idle) == self.idle.maxlen:
            self.abandoned += 1
        self.idle.append(token)
        if new:
            self.started += 1
        else:
            self.rotated += 1


class Load:
    def __init__(self, plan: LoadPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.endpoint = Endpoint.parse(plan.token_url)
        self.head = self.endpoint.request_head()
        self.issuer = Issuer(plan.token_url, plan.internal_url, plan.internal_token)
        self.cc_line = client_credentials_line(plan.machine, plan.params)
        self.chains = Chains(plan.chains)
        self.feed: CodeFeed | None = None
        self.stats = WindowStats()
        self.scheduled = 0
        self.windows = max(1, round(plan.duration / plan.window))
        self._last_cpu = 0.0

    # ------------------------------------------------------------------ set-up

    async def _seed(self, http: aiohttp.ClientSession) -> int:
        """Chains to rotate from the first second, and the first codes of the feed."""
        web = self.plan.web
        code_share = self.plan.share("authorization_code")
        refresh_share = self.plan.share("refresh_token")
        if web is None or not (code_share or refresh_share):
            return 0
        if code_share:
            self.feed = CodeFeed(self.issuer, web, self.plan.rate * code_share, self.plan.code_lead)
            await self.feed.top_up(http)
        if not refresh_share:
            return 0
        n = min(self.plan.chains, max(50, math.ceil(self.plan.rate * refresh_share * 2)))
        minted = await self.issuer.mint_codes(web, n, http)
        for token in await self.issuer.exchange(web, minted):
            self.chains.put(token, new=True)
        return n

    # ------------------------------------------------------------------ requests

    def _line(self, grant: str) -> Line | None:
        web = self.plan.web
        if grant == "client_credentials":
            return self.cc_line
        if web is None:
            return None
        if grant == "authorization_code":
            got = self.feed.take() if self.feed else None
            return code_line(web, *got) if got else None
        token = self.chains.take()
        return refresh_line(web, token) if token else None

    def _answered(self, grant: str, status: int, body: bytes) -> None:
        """Keep the successor refresh token (a code exchange starts a chain)."""
        if grant == "client_credentials":
            return
        if status == OK_STATUS:
            with contextlib.suppress(orjson.JSONDecodeError):
                token = orjson.loads(body).get("refresh_token")
                if isinstance(token, str):
                    self.chains.put(token, new=grant == "authorization_code")
                    return
        if grant == "refresh_token":
            self.chains.broken += 1

    async def _fire(self, pool: ConnectionPool, due: float, grant: str, line: Line) -> None:
        try:
            conn = await pool.acquire()
        except OSError:
            self.stats.failed("connect")
            return
        self.stats.record_lag(time.monotonic() - due)
        try:
            status, body = await conn.send(build_request(self.head, *line))
        except ConnectionLost:
            self.stats.failed("read")
            pool.release(conn)
            if grant == "refresh_token":
                self.chains.broken += 1
            return
        self.stats.record_grant(grant, status, body, time.monotonic() - due)
        pool.release(conn)
        self._answered(grant, status, body)

    # ------------------------------------------------------------------ the run

    def _send_window(self, index: int, cpu0: float) -> float:
        stats, self.stats = self.stats, WindowStats()
        cpu = time.process_time()
        self.pipe.send(
            (
                "window",
                index,
                {
                    **stats.dump(),
                    "generator_cpu_s": cpu - cpu0,
                    "idle_chains": len(self.chains.idle),
                    "buffered_codes": len(self.feed.codes) if self.feed else 0,
                },
            )
        )
        return cpu

    async def _windows(self, t0: float) -> None:
        cpu = time.process_time()
        for k in range(1, self.windows):  # the last one is sent after the drain
            await asyncio.sleep(max(0.0, t0 + k * self.plan.window - time.monotonic()))
            cpu = self._send_window(k - 1, cpu)
        self._last_cpu = cpu

    async def run(self) -> None:
        plan = self.plan
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector) as http:
            seeded = await self._seed(http)
            pool = ConnectionPool(self.endpoint, plan.max_connections)
            self.pipe.send(("ready", {"seeded_chains": seeded, "code_ttl": self.issuer.code_ttl}))
            start_at = self.pipe.recv()
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            t0 = time.monotonic()
            end = t0 + self.windows * plan.window
            minting = asyncio.create_task(self.feed.run(http)) if self.feed else None
            reporter = asyncio.create_task(self._windows(t0))
            grants = [g for g in plan.weights if plan.weights[g] > 0]
            cumulative = list(itertools.accumulate(plan.weights[g] for g in grants))
            rng = random.Random(plan.seed)  # noqa: S311 - an interleaving, not a secret
            pending: set[asyncio.Task[None]] = set()
            for i in itertools.count():
                due = t0 + i / plan.rate
                if due >= end:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.scheduled += 1
                grant = rng.choices(grants, cum_weights=cumulative)[0]
                line = self._line(grant)
                if line is None:
                    self.stats.starved[grant] = self.stats.starved.get(grant, 0) + 1
                    continue
                task = asyncio.create_task(self._fire(pool, due, grant, line))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await reporter
            if pending:
                _, late = await asyncio.wait(set(pending), timeout=DRAIN_SECONDS)
                for task in late:
                    task.cancel()
                    self.stats.failed("timeout")
            if minting is not None:
                minting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await minting
            self._send_window(self.windows - 1, self._last_cpu)
            # the parent reads memory and fds before our connections go
            if self.pipe.poll(READ_TIMEOUT):
                self.pipe.recv()
            pool.close()
        self.pipe.send(("done", self.totals()))

    def totals(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "scheduled": self.scheduled,
            "chains": {
                "started": self.chains.started,
                "rotations": self.chains.rotated,
                "broken": self.chains.broken,
                "abandoned": self.chains.abandoned,
                "idle_at_end": len(self.chains.idle),
            },
            "codes": {
                "minted": feed.minted if feed else 0,
                "expired_unsent": feed.expired if feed else 0,
                "mint_failures": feed.failures if feed else 0,
                "last_mint_failure": feed.last_failure if feed else "",
                "ttl_s": self.issuer.code_ttl,
            },
        }


def main(pipe: Connection, plan: LoadPlan) -> None:
    """The load process's entry point (multiprocessing, spawn context)."""
    if plan.cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(plan.cores))
    import uvloop

    try:
        uvloop.run(Load(plan, pipe).run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the parent reports it
        pipe.send(("error", " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]))
