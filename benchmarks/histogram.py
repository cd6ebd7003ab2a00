"""Latency histograms in microseconds, mergeable across processes, seconds and wrk runs.

Values below 4,096 µs are kept exactly; above, each value is rounded down to 12 significant
bits (an error under 0.05 %), so a histogram stays small however long the run. Percentiles
use the nearest-rank definition (the smallest recorded value with at least p % of the
samples at or below it), as wrk and HdrHistogram do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

EXACT_BELOW = 1 << 12
# Percentiles the report keeps for the plot: "nines" from the median to the maximum.
CURVE_POINTS = (
    0.0,
    10.0,
    25.0,
    50.0,
    75.0,
    90.0,
    95.0,
    97.5,
    99.0,
    99.5,
    99.75,
    99.9,
    99.95,
    99.99,
    99.999,
    100.0,
)


def bucket(us: int) -> int:
    """The key a latency of `us` microseconds is counted under."""
    if us < EXACT_BELOW:
        return us if us > 0 else 0
    shift = us.bit_length() - 12
    return (us >> shift) << shift


class Histogram:
    """Counts per (bucketed) microsecond value."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = {}
        if counts:
            for value, count in counts.items():
                if count:
                    key = bucket(int(value))
                    self.counts[key] = self.counts.get(key, 0) + int(count)

    def record(self, us: int) -> None:
        key = bucket(us)
        self.counts[key] = self.counts.get(key, 0) + 1

    def add(self, other: Histogram) -> Histogram:
        for value, count in other.counts.items():
            self.counts[value] = self.counts.get(value, 0) + count
        return self

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        total = cls()
        for part in parts:
            total.add(part)
        return total

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def percentile(self, p: float) -> int:
        """Nearest rank, in µs; 0 for an empty histogram."""
        total = self.total
        if not total:
            return 0
        rank = max(1, math.ceil(p / 100.0 * total))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return max(self.counts)

    def percentiles(self, ps: Iterable[float]) -> dict[float, int]:
        """Several percentiles in one pass over the sorted values."""
        wanted = sorted(set(ps))
        total = self.total
        out: dict[float, int] = {}
        if not total:
            return dict.fromkeys(wanted, 0)
        values = sorted(self.counts)
        seen, i = 0, 0
        for p in wanted:
            rank = max(1, math.ceil(p / 100.0 * total))
            while seen < rank and i < len(values):
                seen += self.counts[values[i]]
                i += 1
            out[p] = values[i - 1] if i else values[0]
        return out

    def mean(self) -> float:
        total = self.total
        return sum(v * c for v, c in self.counts.items()) / total if total else 0.0

    def max(self) -> int:
        return max(self.counts) if self.counts else 0

    def to_pairs(self) -> list[list[int]]:
        return [[v, self.counts[v]] for v in sorted(self.counts)]

    @classmethod
    def from_pairs(cls, pairs: Iterable[Iterable[int]]) -> Histogram:
        hist = cls()
        for value, count in pairs:
            key = bucket(int(value))
            hist.counts[key] = hist.counts.get(key, 0) + int(count)
        return hist


def to_ms(us: float) -> float:
    """Microseconds as the reports' milliseconds (to the µs)."""
    return round(us / 1000, 3)


def latency_ms(hist: Histogram) -> dict[str, float]:
    """The reports' `latency_ms`: p50, p90, p99, p99.9 and max, in ms."""
    p = hist.percentiles((50, 90, 99, 99.9))
    return {
        "p50": to_ms(p[50]),
        "p90": to_ms(p[90]),
        "p99": to_ms(p[99]),
        "p99.9": to_ms(p[99.9]),
        "max": to_ms(hist.max()),
    }


def undo_wrk_correction(
    counts: Mapping[int, int], runtime_us: int, completed: int, connections: int
) -> dict[int, int]:
    """wrk 4 "corrects" its latency histogram for coordinated omission before handing it to the
    Lua `done` hook (`stats_correct`): for every sample of at least twice the expected interval
    e = runtime / (completed / connections) it adds synthetic samples at value - e, value - 2e,
    ... (while above e). That guess is meaningless for a closed loop, so we take it back out:
    the synthetic samples landing on a value are the raw samples above it in the same residue
    class mod e, which a pass from the largest value down recovers exactly."""
    if connections <= 0 or completed < connections:
        return dict(counts)
    expected = runtime_us // (completed // connections)
    if expected <= 0:
        return dict(counts)
    raw: dict[int, int] = {}
    above: dict[int, int] = {}  # residue class -> raw samples at larger values (>= 2e)
    for value in sorted(counts, reverse=True):
        final = counts[value]
        if value > expected:
            synthetic = above.get(value % expected, 0)
            own = final - synthetic
        else:
            own = final
        if own < 0:  # not wrk's correction after all: keep what we were given
            return dict(counts)
        if own:
            raw[value] = own
            if value >= 2 * expected:
                above[value % expected] = above.get(value % expected, 0) + own
    return raw
