"""One phase of a run: a workload (the floor, a grant or the mix) driven closed-loop at a
concurrency or open-loop at a rate, with warmup, credential sizing and measurement windows.

Sizing: the first warmup second shows the rate, and enough lines for the rest of the phase
(times 1.3) are prepared before the timed part starts. Should a timed wrk slice still run out,
it is thrown away and run again after more lines are prepared (its time is not counted), so
no figure ever includes a generator that was waiting for work. Preparation is never inside a
measurement window: windows close before it and reopen after.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmarks import attribution, cpu
from benchmarks.generators import pyload
from benchmarks.generators.common import Interval, Outcome
from benchmarks.generators.wrk import Wrk
from benchmarks.histogram import Histogram
from benchmarks.live import Live
from benchmarks.prepare import Line, Pool

MAX_REDO = 3
STATIC_SLICE_LINES = 20_000


@dataclass
class PhaseResult:
    name: str  # "floor", a grant type, or "mix"
    mode: str  # "closed" or "open"
    engine: str
    concurrency: int | None = None
    rate: float | None = None  # open loop: the rate asked for
    rate_basis: str = ""  # e.g. "0.5 x closed-loop peak"
    warmup_s: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    usage: cpu.Usage = field(default_factory=cpu.Usage)  # while load ran: utilisation
    window_usage: cpu.Usage = field(default_factory=cpu.Usage)  # same span as `metrics`
    metrics: attribution.Scrape | None = None
    prepared: int = 0
    prepare_s: float = 0.0
    top_ups: int = 0
    redone: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} {self.mode}"


def estimate(outcome: Outcome) -> float:
    """Requests per second a run could do: if it ran out of lines, up to that moment."""
    if outcome.exhausted and outcome.exhausted_after:
        return outcome.used / max(outcome.exhausted_after, 1e-3)
    return outcome.rate


class Window:
    """A measurement window: `/metrics` deltas and the CPU of the watched processes over the
    same spans (open .. close), so per-request figures divide like by like. Preparation happens
    between spans, never inside one."""

    def __init__(self, metrics_url: str | None, watcher: cpu.Watcher) -> None:
        self.metrics = attribution.MetricsWindows(metrics_url)
        self.watcher = watcher
        self.usage = cpu.Usage()
        self._start: cpu.Sample | None = None

    def open(self) -> None:
        self.metrics.open()
        self._start = self.watcher.sample()

    def close(self) -> None:
        if self._start is not None:
            self.usage.add(self._start, self.watcher.sample())
            self._start = None
        self.metrics.close()

    def into(self, result: PhaseResult) -> None:
        result.metrics = self.metrics.result()
        result.window_usage = self.usage


class Hooks(Protocol):
    def begin(self, name: str, mode: str) -> None: ...
    def end(self, name: str, mode: str) -> None: ...


class Runner:
    def __init__(
        self,
        *,
        live: Live,
        watcher: cpu.Watcher,
        workdir: Path,
        engine: str,
        wrk_label: str | None,
        threads: int,
        processes: int,
        generator_cores: list[int],
        batch: int,
        slice_s: int = 1,
    ) -> None:
        self.live = live
        self.watcher = watcher
        self.workdir = workdir
        self.engine = engine  # "wrk" or "python" for closed loops
        self.wrk_label = wrk_label or "wrk"
        self.threads = threads
        self.processes = processes
        self.generator_cores = generator_cores
        self.batch = batch
        self.slice_s = slice_s
        self.hooks: Hooks | None = None  # e.g. a profiler, around each timed part

    def _begin(self, result: PhaseResult) -> None:
        if self.hooks is not None:
            self.hooks.begin(result.name, result.mode)

    def _end(self, result: PhaseResult) -> None:
        if self.hooks is not None:
            self.hooks.end(result.name, result.mode)

    # ------------------------------------------------------------------ helpers

    def _prepare(self, pool: Pool, n: int, result: PhaseResult) -> None:
        if not pool.consumable or len(pool) >= n:
            return
        before_prep = getattr(pool, "prepare_seconds", 0.0)
        added = pool.ensure(n)
        result.prepared += added
        result.prepare_s += getattr(pool, "prepare_seconds", 0.0) - before_prep

    def _allot(self, rate: float | None, concurrency: int, pool: Pool) -> int:
        if not pool.consumable:
            return int((rate or STATIC_SLICE_LINES) * self.slice_s * 2) + 4 * concurrency
        if rate is None:
            return self.batch
        return int(rate * self.slice_s * 1.6) + 4 * concurrency

    def _need(self, rate: float, seconds: float, concurrency: int) -> int:
        return int(rate * seconds * 1.3) + 8 * concurrency

    # ------------------------------------------------------------------ closed loop

    def closed(
        self,
        name: str,
        url: str,
        pool: Pool,
        concurrency: int,
        warmup: int,
        duration: int,
        metrics_url: str | None,
    ) -> PhaseResult:
        if self.engine == "wrk":
            return self._closed_wrk(name, url, pool, concurrency, warmup, duration, metrics_url)
        return self._closed_python(name, url, pool, concurrency, warmup, duration, metrics_url)

    def _wrk_slice(self, wrk: Wrk, pool: Pool, allot: int) -> Outcome:
        if not pool.consumable:  # one line, repeated by the script
            return wrk.run_slice([pool.take(1)] * wrk.threads, self.slice_s, repeat=True)
        share = math.ceil(allot / wrk.threads)
        chunks = [pool.take(share) for _ in range(wrk.threads)]
        outcome = wrk.run_slice(chunks, self.slice_s)  # on failure, no line is given back
        unused: list[Line] = []
        for chunk, used in zip(chunks, outcome.per_thread_used, strict=False):
            unused.extend(chunk[used:])
        pool.give_back(unused)
        return outcome

    def _closed_wrk(
        self,
        name: str,
        url: str,
        pool: Pool,
        concurrency: int,
        warmup: int,
        duration: int,
        metrics_url: str | None,
    ) -> PhaseResult:
        wrk = Wrk(url, concurrency, self.threads, self.workdir / f"wrk-{name}")
        result = PhaseResult(
            name,
            "closed",
            f"{self.wrk_label} ({wrk.threads} thread{'s' if wrk.threads > 1 else ''})",
            concurrency=concurrency,
            warmup_s=warmup,
        )
        self.live.phase(
            result.label,
            f"{concurrency} connections, {result.engine}, warmup {warmup} s, {duration} s timed",
        )
        rate: float | None = None
        for k in range(warmup):
            outcome = self._wrk_slice(wrk, pool, self._allot(rate, concurrency, pool))
            rate = max(rate or 0.0, estimate(outcome))
            self.live.tick(name, k + 1, warmup, outcome.intervals[0], None, warmup=True)
            if k == 0:
                self._prepare(pool, self._need(rate, warmup - 1 + duration, concurrency), result)
        if rate is None:
            self._prepare(pool, self.batch, result)
        windows = Window(metrics_url, self.watcher)
        self._begin(result)
        windows.open()
        while len(result.outcome.intervals) < duration:
            allot = self._allot(rate, concurrency, pool)
            if pool.consumable and len(pool) < allot:
                windows.close()
                left = duration - len(result.outcome.intervals)
                self._prepare(pool, max(allot, self._need(rate or 0.0, left, concurrency)), result)
                result.top_ups += 1
                windows.open()
            before = self.watcher.sample()
            outcome = self._wrk_slice(wrk, pool, allot)
            after = self.watcher.sample()
            if outcome.exhausted and result.redone < MAX_REDO:
                result.redone += 1
                rate = max(rate or 0.0, estimate(outcome) * 1.2)
                continue
            if outcome.exhausted:
                result.notes.append("a timed slice ran out of prepared lines and was kept")
            result.usage.add(before, after)
            result.outcome.add(outcome)
            rate = max(rate or 0.0, outcome.rate)
            self.live.tick(
                name, len(result.outcome.intervals), duration, outcome.intervals[0], result.outcome
            )
        windows.close()
        self._end(result)
        windows.into(result)
        if result.redone:
            result.notes.append(
                f"{result.redone} slice(s) ran out of prepared lines and were "
                "run again after preparing more (not counted)"
            )
        return result

    def _closed_python(
        self,
        name: str,
        url: str,
        pool: Pool,
        concurrency: int,
        warmup: int,
        duration: int,
        metrics_url: str | None,
    ) -> PhaseResult:
        result = PhaseResult(
            name,
            "closed",
            f"python ({self.processes} process{'es' if self.processes > 1 else ''})",
            concurrency=concurrency,
            warmup_s=warmup,
        )
        self.live.phase(
            result.label,
            f"{concurrency} connections, {result.engine}, warmup {warmup} s, {duration} s timed",
        )
        rate: float | None = None
        if warmup:
            n = self._allot(None, concurrency, pool) * warmup
            lines = pool.take(n)
            spec = self._spec(url, "closed", warmup, concurrency)
            outcome, unused = pyload.run(spec, lines, self._ticker(name, warmup, None, True))
            pool.give_back(unused)
            # the best second: the first one of a run is often slow (connections, caches)
            rate = max([estimate(outcome)] + [i.rate for i in outcome.intervals])
        # no top-ups inside one Python run: prepare twice what the warmup suggests
        need = (
            self._need(rate * 1.6, duration, concurrency) if rate else self.batch * max(1, duration)
        )
        if not pool.consumable:
            need = int((rate or STATIC_SLICE_LINES) * duration * 2) + 8 * concurrency
        self._prepare(pool, need, result)
        lines = pool.take(need)
        so_far = Outcome()
        outcome, unused = self._measured(
            result,
            metrics_url,
            self._spec(url, "closed", duration, concurrency),
            lines,
            self._ticker(name, duration, so_far, False),
        )
        pool.give_back(unused)
        result.outcome = outcome
        if outcome.exhausted:
            result.notes.append(
                f"ran out of prepared lines after {outcome.exhausted_after:.1f}"
                " s; rates are over the time before that"
            )
        return result

    # ------------------------------------------------------------------ open loop

    def open(
        self,
        name: str,
        url: str,
        pool: Pool,
        rate: float,
        warmup: int,
        duration: int,
        max_connections: int,
        metrics_url: str | None,
        basis: str = "",
    ) -> PhaseResult:
        result = PhaseResult(
            name,
            "open",
            f"python ({self.processes} process{'es' if self.processes > 1 else ''})",
            rate=rate,
            rate_basis=basis,
            concurrency=None,
            warmup_s=warmup,
        )
        self.live.phase(
            result.label,
            f"{rate:,.0f} req/s{' (' + basis + ')' if basis else ''}"
            f", up to {max_connections} connections, {result.engine}, "
            f"warmup {warmup} s, {duration} s timed",
        )
        if warmup:
            n = int(rate * warmup * 1.02) + 50
            self._prepare(pool, n, result)
            spec = self._spec(url, "open", warmup, max_connections, rate)
            _, unused = pyload.run(spec, pool.take(n), self._ticker(name, warmup, None, True))
            pool.give_back(unused)
        n = int(rate * duration * 1.02) + 50
        self._prepare(pool, n, result)
        so_far = Outcome()
        outcome, unused = self._measured(
            result,
            metrics_url,
            self._spec(url, "open", duration, max_connections, rate),
            pool.take(n),
            self._ticker(name, duration, so_far, False),
        )
        pool.give_back(unused)
        result.outcome = outcome
        if outcome.exhausted:
            result.notes.append("ran out of prepared lines")
        return result

    # ------------------------------------------------------------------ python runs

    def _spec(
        self, url: str, mode: str, duration: float, connections: int, rate: float = 0.0
    ) -> pyload.LoadSpec:
        return pyload.LoadSpec(
            url, mode, duration, connections, rate, self.processes, tuple(self.generator_cores)
        )

    def _measured(
        self,
        result: PhaseResult,
        metrics_url: str | None,
        spec: pyload.LoadSpec,
        lines: list[Line],
        progress: Callable[[int, Interval], None],
    ) -> tuple[Outcome, list[Line]]:
        window = Window(metrics_url, self.watcher)
        self._begin(result)
        try:
            outcome, unused = pyload.run(
                spec, lines, progress, on_start=window.open, on_end=window.close
            )
        finally:
            self._end(result)
        window.into(result)
        result.usage = window.usage
        return outcome, unused

    def _ticker(
        self,
        name: str,
        total: int,
        so_far: Outcome | None,
        warmup: bool,
    ) -> Callable[[int, Interval], None]:
        def tick(second: int, interval: Interval) -> None:
            if so_far is not None:
                so_far.add(
                    Outcome(
                        seconds=interval.seconds,
                        completed=interval.completed,
                        hist=Histogram().add(interval.hist),
                        socket=Counter({"any": interval.errors}),
                    )
                )
            self.live.tick(name, second, total, interval, so_far, warmup=warmup)

        return tick
