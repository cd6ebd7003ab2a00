"""CPU time from /proc (Linux): processes with their descendants, and each core's busy time.

Used to say where a run's CPU went (the service, Redis, Postgres, the generator) and which
side was saturated. Elsewhere than Linux every reading is None and the report says "n/a".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ")"
    return text.rsplit(")", 1)[1].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_cpu_seconds(root: int, children: dict[int, list[int]] | None = None) -> float | None:
    """User + system CPU of `root` and every live descendant, plus what its reaped children
    used (cutime/cstime), in seconds; None when `root` is gone or /proc is missing."""
    fields = _stat_fields(root)
    if fields is None:
        return None
    if children is None:
        children = _children_map()
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        f = _stat_fields(pid)
        if f is None:
            continue
        total += int(f[11]) + int(f[12])
        stack.extend(children.get(pid, ()))
    return total / TICK


def tree(root: int) -> list[int]:
    """`root` and its live descendants (empty when `root` is gone)."""
    if _stat_fields(root) is None:
        return []
    children = _children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def core_ticks() -> dict[int, tuple[int, int]] | None:
    """Per core: (busy ticks, total ticks) since boot, from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out: dict[int, tuple[int, int]] = {}
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


def available_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def parse_cores(text: str) -> list[int]:
    """ "0", "0,2", "1-3" -> core numbers."""
    cores: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cores.update(range(int(low), int(high) + 1))
        else:
            cores.add(int(part))
    return sorted(cores)


def pin(pid: int, cores: Iterable[int]) -> bool:
    """Move every thread of `pid` to `cores`; False when that is not possible here."""
    wanted = set(cores)
    if not wanted or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    ok = True
    for tid in tids:
        try:
            os.sched_setaffinity(tid, wanted)
        except OSError:
            ok = False
    return ok


@dataclass
class Sample:
    """One reading of everything we watch, at one moment."""

    wall: float
    processes: dict[str, float | None]
    cores: dict[int, tuple[int, int]] | None


@dataclass
class Usage:
    """CPU used between samples, summed over windows (seconds, and busy fraction per core)."""

    wall: float = 0.0
    processes: dict[str, float] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    core_busy: dict[int, float] = field(default_factory=dict)  # busy ticks
    core_total: dict[int, float] = field(default_factory=dict)

    def add(self, before: Sample, after: Sample) -> None:
        self.wall += after.wall - before.wall
        for name, value in after.processes.items():
            start = before.processes.get(name)
            if value is None or start is None:
                self.missing.add(name)
                continue
            self.processes[name] = self.processes.get(name, 0.0) + max(0.0, value - start)
        if before.cores and after.cores:
            for core, (busy, total) in after.cores.items():
                if core in before.cores:
                    b0, t0 = before.cores[core]
                    self.core_busy[core] = self.core_busy.get(core, 0) + busy - b0
                    self.core_total[core] = self.core_total.get(core, 0) + total - t0

    def seconds(self, name: str) -> float | None:
        if name in self.missing or name not in self.processes:
            return None
        return self.processes[name]

    def utilisation(self, name: str) -> float | None:
        """CPU seconds per wall second (1.0 = one core busy)."""
        used = self.seconds(name)
        return used / self.wall if used is not None and self.wall > 0 else None

    def core_utilisation(self) -> dict[int, float]:
        return {
            core: self.core_busy[core] / total
            for core, total in self.core_total.items()
            if total > 0
        }


class Watcher:
    """Named process trees (by root pid) plus the cores, read together."""

    def __init__(self, roots: dict[str, int | None] | None = None) -> None:
        self.roots: dict[str, int] = {k: v for k, v in (roots or {}).items() if v}

    def watch(self, name: str, pid: int | None) -> None:
        if pid:
            self.roots[name] = pid

    def sample(self, extra: dict[str, float | None] | None = None) -> Sample:
        import time

        children = _children_map() if self.roots else {}
        processes: dict[str, float | None] = {
            name: tree_cpu_seconds(pid, children) for name, pid in self.roots.items()
        }
        if extra:
            processes.update(extra)
        return Sample(time.perf_counter(), processes, core_ticks())


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children (wrk runs, generator processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def describe_cores(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores) if cores else "any"
