"""The Python load generator: several processes (uvloop + a minimal HTTP/1.1 client), closed
loop at a concurrency or open loop at a rate.

Open loop: request i of a process is due at t0 + i / rate, whatever happened before; it waits
for a free connection if all are busy (opening more up to `max_connections`), and its latency
is measured from the time it was due, not the time it was sent, so a slow server cannot hide
its queue by slowing the generator down (coordinated omission). How late sends were against
their schedule is recorded too ("send lag"): a large lag means the generator, not the server,
fell behind. Requests still running at the end are waited for (up to 10 s) and counted.

Closed loop: each connection sends its next request when the previous answer is in; requests
in flight at the end are not counted (as wrk does).

Each process reports once a second (completed, statuses, latency histogram); the parent merges
them into one progress line and one outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from benchmarks.generators.common import (
    NO_JWT,
    OK_STATUS,
    Interval,
    Outcome,
    error_code,
    has_jwt_access_token,
)
from benchmarks.generators.connpool import ConnectionPool
from benchmarks.generators.httpclient import (
    ConnectionLost,
    Endpoint,
    HttpConnection,
    build_request,
)
from benchmarks.histogram import Histogram, bucket
from benchmarks.prepare import Line

DRAIN_SECONDS = 10.0
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadSpec:
    url: str
    mode: str  # "closed" or "open"
    duration: float
    connections: int  # closed: in total; open: at most, in total
    rate: float = 0.0  # open: requests per second, in total
    processes: int = 1
    cores: tuple[int, ...] = ()


class _Stats:
    __slots__ = ("completed", "errors", "hist", "lag", "socket", "statuses")

    def __init__(self) -> None:
        self.completed = 0
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.socket: dict[str, int] = {}
        self.hist: dict[int, int] = {}
        self.lag: dict[int, int] = {}

    def record(self, status: int, body: bytes, seconds: float) -> None:
        self.completed += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != OK_STATUS:
            key = f"{status} {error_code(body)}"
            self.errors[key] = self.errors.get(key, 0) + 1
        elif not has_jwt_access_token(body):
            self.errors[NO_JWT] = self.errors.get(NO_JWT, 0) + 1
        b = bucket(int(seconds * 1e6))
        self.hist[b] = self.hist.get(b, 0) + 1

    def record_lag(self, seconds: float) -> None:
        b = bucket(max(0, int(seconds * 1e6)))
        self.lag[b] = self.lag.get(b, 0) + 1

    def failed(self, kind: str) -> None:
        self.socket[kind] = self.socket.get(kind, 0) + 1

    def dump(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "statuses": self.statuses,
            "errors": self.errors,
            "socket": self.socket,
            "hist": self.hist,
            "lag": self.lag,
        }


# --------------------------------------------------------------------------- a worker process


class _Lines:
    def __init__(self, lines: Sequence[Line]) -> None:
        self._it: Iterator[Line] = iter(lines)
        self.used = 0
        self.exhausted_at: float | None = None

    def next(self) -> Line | None:
        line = next(self._it, None)
        if line is None:
            if self.exhausted_at is None:
                self.exhausted_at = time.monotonic()
            return None
        self.used += 1
        return line


class _Worker:
    def __init__(
        self,
        pipe: Connection,
        spec: LoadSpec,
        index: int,
        lines: Sequence[Line],
    ) -> None:
        self.pipe = pipe
        self.spec = spec
        self.index = index
        self.endpoint = Endpoint.parse(spec.url)
        self.head = self.endpoint.request_head()
        self.lines = _Lines(lines)
        share = spec.connections // spec.processes + (index < spec.connections % spec.processes)
        self.connections = max(1, share)
        self.stats = _Stats()
        self.t0 = 0.0
        self.end = 0.0
        self.scheduled = 0

    async def run(self) -> None:
        pre_open = self.connections if self.spec.mode == "closed" else min(self.connections, 8)
        conns = [await HttpConnection.open(self.endpoint) for _ in range(pre_open)]
        self.pipe.send(("ready",))
        start_at = self.pipe.recv()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        self.t0 = time.monotonic()
        self.end = self.t0 + self.spec.duration
        cpu0 = time.process_time()
        reporter = asyncio.create_task(self._report())
        if self.spec.mode == "closed":
            await asyncio.gather(*(self._closed(c) for c in conns))
        else:
            await self._open(conns)
        cpu = time.process_time() - cpu0
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        exhausted = self.lines.exhausted_at
        self.pipe.send(
            (
                "done",
                {
                    "tail": self.stats.dump(),
                    "used": self.lines.used,
                    "scheduled": self.scheduled,
                    "exhausted_after": None if exhausted is None else exhausted - self.t0,
                    "cpu": cpu,
                    "seconds": min(time.monotonic(), self.end) - self.t0,
                },
            )
        )
        for c in conns:
            c.close()

    async def _report(self) -> None:
        second = 0
        while True:
            second += 1
            await asyncio.sleep(max(0.0, self.t0 + second - time.monotonic()))
            stats, self.stats = self.stats, _Stats()
            self.pipe.send(("second", second, stats.dump()))

    async def _closed(self, conn: HttpConnection) -> None:
        while time.monotonic() < self.end:
            if conn.closed:
                try:
                    conn = await HttpConnection.open(self.endpoint)
                except OSError:
                    self.stats.failed("connect")
                    await asyncio.sleep(0.05)
                    continue
            line = self.lines.next()
            if line is None:
                return
            started = time.monotonic()
            try:
                status, body = await conn.send(build_request(self.head, *line))
            except ConnectionLost:
                self.stats.failed("read")
                continue
            finished = time.monotonic()
            if finished > self.end:
                return  # in flight at the end: not counted
            self.stats.record(status, body, finished - started)

    async def _open(self, conns: list[HttpConnection]) -> None:
        pool = ConnectionPool(self.endpoint, self.connections, conns)

        async def fire(due: float, line: Line) -> None:
            try:
                c = await pool.acquire()
            except OSError:
                self.stats.failed("connect")
                return
            self.stats.record_lag(time.monotonic() - due)
            try:
                status, body = await c.send(build_request(self.head, *line))
            except ConnectionLost:
                self.stats.failed("read")
                pool.release(c)
                return
            self.stats.record(status, body, time.monotonic() - due)
            pool.release(c)

        interval = self.spec.processes / self.spec.rate
        offset = interval * self.index / self.spec.processes
        pending: set[asyncio.Task[None]] = set()
        i = 0
        while True:
            due = self.t0 + offset + i * interval
            if due >= self.end:
                break
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            line = self.lines.next()
            if line is None:
                break
            task = asyncio.create_task(fire(due, line))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        self.scheduled = i
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=DRAIN_SECONDS)
            for task in late:
                task.cancel()
                self.stats.failed("timeout")


def _worker_main(pipe: Connection, spec: LoadSpec, index: int, lines: Sequence[Line]) -> None:
    if spec.cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(spec.cores))
    import uvloop

    try:
        uvloop.run(_Worker(pipe, spec, index, lines).run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # report it to the parent rather than die silently
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- the parent


class LoadError(RuntimeError):
    """A generator process failed."""


def _merge(parts: Sequence[dict[str, Any]]) -> tuple[_Stats, Histogram, Histogram]:
    total = _Stats()
    hist, lag = Histogram(), Histogram()
    for part in parts:
        total.completed += part["completed"]
        for name in ("statuses", "errors", "socket"):
            target = getattr(total, name)
            for k, v in part[name].items():
                target[k] = target.get(k, 0) + v
        hist.add(Histogram(part["hist"]))
        lag.add(Histogram(part["lag"]))
    return total, hist, lag


def run(
    spec: LoadSpec,
    lines: Sequence[Line],
    progress: Callable[[int, Interval], None] | None = None,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> tuple[Outcome, list[Line]]:
    """Run `spec` over `lines` (each sent at most once); returns the outcome and the lines no
    process touched, in order, for the next run. `on_start` / `on_end` are called when the
    load starts and when the last process is done (to read CPU counters around it)."""
    processes = max(1, min(spec.processes, spec.connections))
    spec = LoadSpec(
        spec.url, spec.mode, spec.duration, spec.connections, spec.rate, processes, spec.cores
    )
    share = -(-len(lines) // processes)
    chunks = [list(lines[i * share : (i + 1) * share]) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    try:
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(child, spec, i, chunks[i]),
                daemon=True,
                name=f"bench-load-{i}",
            )
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            if not pipe.poll(START_TIMEOUT):
                raise LoadError("a generator process did not start")
            message = pipe.recv()
            if message[0] == "error":
                raise LoadError(f"generator process: {message[1]}")
        start_at = time.monotonic() + 0.1
        for pipe in pipes:
            pipe.send(start_at)
        time.sleep(max(0.0, start_at - time.monotonic()))
        if on_start:
            on_start()
        result = _collect(spec, pipes, chunks, progress)
        if on_end:
            on_end()
        return result
    finally:
        for proc in procs:
            proc.join(timeout=DRAIN_SECONDS + 5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _collect(
    spec: LoadSpec,
    pipes: list[Connection],
    chunks: list[list[Line]],
    progress: Callable[[int, Interval], None] | None,
) -> tuple[Outcome, list[Line]]:
    seconds: dict[int, list[dict[str, Any]]] = {}
    finals: dict[int, dict[str, Any]] = {}
    index_of = {id(p): i for i, p in enumerate(pipes)}
    open_pipes = list(pipes)
    deadline = time.monotonic() + spec.duration + DRAIN_SECONDS + START_TIMEOUT
    intervals: list[Interval] = []
    while open_pipes:
        if time.monotonic() > deadline:
            raise LoadError("the generator processes did not finish")
        for pipe in wait(open_pipes, timeout=1.0):
            assert isinstance(pipe, Connection)
            try:
                message = pipe.recv()
            except EOFError:
                raise LoadError("a generator process died") from None
            if message[0] == "second":
                _, second, data = message
                seconds.setdefault(second, []).append(data)
                if len(seconds[second]) == len(pipes) and second <= spec.duration + 0.5:
                    total, hist, _ = _merge(seconds[second])
                    interval = Interval(
                        1.0,
                        total.completed,
                        sum(total.errors.values()) + sum(total.socket.values()),
                        hist,
                    )
                    intervals.append(interval)
                    if progress:
                        progress(second, interval)
            elif message[0] == "done":
                finals[index_of[id(pipe)]] = message[1]
                open_pipes.remove(pipe)
            elif message[0] == "error":
                raise LoadError(f"generator process: {message[1]}")
    everything = [d for parts in seconds.values() for d in parts]
    everything += [f["tail"] for f in finals.values()]
    total, hist, lag = _merge(everything)
    exhausted = [f["exhausted_after"] for f in finals.values() if f["exhausted_after"]]
    if spec.mode == "closed":
        elapsed = min(f["seconds"] for f in finals.values())
        if exhausted:
            elapsed = min(elapsed, *exhausted)
    else:
        elapsed = spec.duration
    outcome = Outcome(
        seconds=elapsed,
        completed=total.completed,
        hist=hist,
        lag=lag,
        statuses=_counter(total.statuses),
        errors=_counter(total.errors),
        socket=_counter(total.socket),
        intervals=intervals,
        used=sum(f["used"] for f in finals.values()),
        exhausted=bool(exhausted),
        exhausted_after=min(exhausted) if exhausted else None,
        scheduled=sum(f["scheduled"] for f in finals.values()),
        generator_cpu=sum(f["cpu"] for f in finals.values()),
    )
    unused = [line for i, chunk in enumerate(chunks) for line in chunk[finals[i]["used"] :]]
    return outcome, unused


def _counter(mapping: dict[Any, int]) -> Counter[Any]:
    return Counter(mapping)
