"""Closed-loop load with wrk (4.x, LuaJIT): the cheapest generator on a small machine.

A run is a series of one-second wrk invocations ("slices") rather than one long one, because
wrk reports nothing until it ends: between slices we print progress, hand each wrk thread a
fresh file of request lines (`wrk_token.lua`: one line per request, never one line twice) and,
should a slice run out of lines, prepare more. Each slice's latency histogram is exact (read
from wrk's own counters) and histograms add up, so the run's percentiles are exact too.

Cost of slicing: wrk starts and connects 32 sockets once a second (a few ms), and the
requests in flight when a slice ends (at most one per connection) are sent but not counted:
their credentials are spent, their time is not in the figures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.cpu import children_cpu_seconds
from benchmarks.generators.common import Interval, Outcome
from benchmarks.histogram import Histogram, undo_wrk_correction
from benchmarks.prepare import Line

SCRIPT = Path(__file__).with_name("wrk_token.lua")


class WrkError(RuntimeError):
    """wrk failed or said something we do not understand."""


def wrk_version(binary: str = "wrk") -> str | None:
    """ "wrk 4.1.0 [epoll]" when wrk is installed and can run our script, else None."""
    path = shutil.which(binary)
    if path is None:
        return None
    result = subprocess.run(  # noqa: S603
        [path, "-v"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    first = ((result.stdout or result.stderr).splitlines() or [""])[0]
    match = re.match(r"wrk\s+(?:\S*/)?(\d+)\.", first)  # "wrk 4.2.0", "wrk debian/4.1.0-3"
    if not match or match.group(1) != "4":
        return None  # wrk2 and others lack the Lua hooks we rely on
    return first.split(" Copyright")[0].strip()


class Wrk:
    """Runs slices of closed-loop load at `connections` over `threads` wrk threads."""

    def __init__(
        self,
        url: str,
        connections: int,
        threads: int,
        workdir: Path,
        timeout_s: int = 10,
        binary: str = "wrk",
    ) -> None:
        threads = max(1, min(threads, connections))
        while connections % threads:  # wrk gives each thread connections // threads
            threads -= 1
        self.url = url
        self.connections = connections
        self.threads = threads
        self.workdir = workdir
        self.timeout_s = timeout_s
        path = shutil.which(binary)
        if path is None:
            raise WrkError(f"{binary} is not installed")
        self.binary = path
        workdir.mkdir(parents=True, exist_ok=True)

    def run_slice(
        self, lines: Sequence[Sequence[Line]], seconds: int = 1, repeat: bool = False
    ) -> Outcome:
        """One wrk run; `lines[i]` feeds thread i. The outcome's `per_thread_used` says how many
        lines each thread spent (the rest may be given to the next slice)."""
        if len(lines) != self.threads:
            raise ValueError("one list of lines per wrk thread")
        prefix = self.workdir / "lines-"
        for i, chunk in enumerate(lines, start=1):
            with open(f"{prefix}{i}.txt", "w") as out:
                out.writelines("\t".join(line) + "\n" for line in chunk)
        argv = [
            self.binary,
            "-t",
            str(self.threads),
            "-c",
            str(self.connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            f"{self.timeout_s}s",
            "-s",
            str(SCRIPT),
            self.url,
            "--",
            str(prefix),
        ] + (["repeat"] if repeat else [])
        cpu_before = children_cpu_seconds()
        proc = subprocess.Popen(  # noqa: S603
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=seconds + self.timeout_s + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cpu = children_cpu_seconds() - cpu_before
        if proc.returncode != 0 or "BENCH summary" not in stdout:
            raise WrkError(
                f"wrk failed (exit {proc.returncode}): {(stderr or stdout).strip()[-500:]}"
            )
        outcome = parse_output(stdout, self.connections)
        outcome.generator_cpu = cpu
        return outcome


def parse_output(stdout: str, connections: int) -> Outcome:
    """The `BENCH ...` lines of wrk_token.lua's `done` as an Outcome (one interval)."""
    raw: dict[int, int] = {}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    socket: Counter[str] = Counter()
    used: list[int] = []
    exhausted_after: list[float] = []
    runtime_us = completed = 0
    for line in stdout.splitlines():
        if not line.startswith("BENCH "):
            continue
        kind, _, rest = line[6:].partition(" ")
        if kind == "summary":
            values = [int(v) for v in rest.split()]
            runtime_us, completed = values[0], values[1]
            for name, value in zip(
                ("connect", "read", "write", "status", "timeout"), values[3:], strict=True
            ):
                if value and name != "status":  # status errors are counted per status below
                    socket[name] += value
        elif kind == "thread":
            _, thread_used, exhausted_us = (int(v) for v in rest.split())
            used.append(thread_used)
            if exhausted_us >= 0:
                exhausted_after.append(exhausted_us / 1e6)
        elif kind == "status":
            status, count = (int(v) for v in rest.split())
            statuses[status] += count
        elif kind == "error":
            count, key = rest.split(" ", 1)
            errors[key] += int(count)
        elif kind == "hist":
            for pair in rest.split():
                value, count = pair.split(":")
                raw[int(value)] = raw.get(int(value), 0) + int(count)
    hist = Histogram(undo_wrk_correction(raw, runtime_us, completed, connections))
    seconds = runtime_us / 1e6
    outcome = Outcome(
        seconds=seconds,
        completed=completed,
        statuses=statuses,
        errors=errors,
        socket=socket,
        hist=hist,
        used=sum(used),
        exhausted=bool(exhausted_after),
        exhausted_after=min(exhausted_after) if exhausted_after else None,
    )
    outcome.per_thread_used = used
    outcome.intervals = [
        Interval(seconds, completed, sum(errors.values()) + sum(socket.values()), hist)
    ]
    return outcome
