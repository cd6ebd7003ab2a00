"""What every generator reports: per-interval progress and a run's outcome."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from benchmarks.histogram import Histogram

OK_STATUS = 200
# A 200 from a token endpoint carries a JWT access token (RFC 9068: three base64url parts); one
# that does not is counted as an error under this key, so that a peer or a target answering 200
# with something else cannot pass as served (wrk_token.lua checks the same).
NO_JWT = "200 no_jwt_access_token"
_JWT_ACCESS_TOKEN = re.compile(rb'"access_token"\s*:\s*"[\w-]+\.[\w-]+\.[\w-]+"')


def has_jwt_access_token(body: bytes) -> bool:
    return _JWT_ACCESS_TOKEN.search(body) is not None


def error_code(body: bytes) -> str:
    """The RFC 6749 `error` of a JSON error body, "-" when there is none."""
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "-"
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and code else "-"


@dataclass
class Interval:
    """One second of a run (one slice for wrk): what completed in it."""

    seconds: float
    completed: int
    errors: int
    hist: Histogram

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Outcome:
    """A generator run, or the sum of several (wrk slices)."""

    seconds: float = 0.0
    completed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "400 invalid_grant" -> n
    socket: Counter[str] = field(default_factory=Counter)  # connect/read/write/timeout
    hist: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)  # open loop: send time - intended time
    intervals: list[Interval] = field(default_factory=list)
    used: int = 0  # lines spent (sent or in flight), so never sent again
    per_thread_used: list[int] = field(default_factory=list)  # wrk: per thread of a slice
    exhausted: bool = False
    exhausted_after: float | None = None  # seconds into the run when lines ran out
    scheduled: int = 0  # open loop: requests due in the run
    generator_cpu: float | None = 0.0  # CPU seconds the generator used while timed

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + sum(self.socket.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(OK_STATUS, 0)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: Outcome) -> Outcome:
        self.seconds += other.seconds
        self.completed += other.completed
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.socket.update(other.socket)
        self.hist.add(other.hist)
        self.lag.add(other.lag)
        self.intervals.extend(other.intervals)
        self.used += other.used
        self.exhausted = self.exhausted or other.exhausted
        self.scheduled += other.scheduled
        if self.generator_cpu is None or other.generator_cpu is None:
            self.generator_cpu = None
        else:
            self.generator_cpu += other.generator_cpu
        return self


def counter_from(mapping: Mapping[str, int] | Mapping[int, int]) -> Counter[str]:
    return Counter({str(k): int(v) for k, v in mapping.items()})
