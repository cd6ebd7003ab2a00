"""Live progress on stderr, one line a second: rate, errors, p99 of the second and so far."""

from __future__ import annotations

import sys
from typing import TextIO

from benchmarks.generators.common import Interval, Outcome


def ms(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"


class Live:
    def __init__(self, quiet: bool = False, out: TextIO | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stderr

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def phase(self, label: str, detail: str) -> None:
        self.say(f"== {label}: {detail}")

    def prepared(self, what: str, count: int, seconds: float) -> None:
        self.say(f"   prepared {count:,} {what} in {seconds:.1f} s (not timed)")

    def tick(
        self,
        label: str,
        second: int,
        total: int | None,
        interval: Interval,
        so_far: Outcome | None,
        warmup: bool = False,
    ) -> None:
        if self.quiet:
            return
        of = f"/{total}" if total else ""
        stage = "warmup " if warmup else ""
        p99 = ms(interval.hist.percentile(99)) if interval.hist else "-"
        line = (
            f"   [{label}] {stage}{second}{of} s  {interval.rate:9,.0f} req/s  "
            f"errors {interval.errors}  p99 {p99}"
        )
        if so_far is not None and so_far.hist and not warmup:
            line += (
                f"  (so far: {so_far.rate:,.0f} req/s, p99 {ms(so_far.hist.percentile(99))},"
                f" errors {so_far.error_count})"
            )
        self.say(line)
