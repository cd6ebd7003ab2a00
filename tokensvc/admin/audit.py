"""The audit trail of administration: one JSON log line per change, and a Prometheus counter.

A line names the event (`client.created`, `client.secret_rotated`, `grant.revoked`, …), who
made it (`actor`: `admin-api` or `cli`) and the ids concerned; never a secret, a key or a
metadata value, so the trail can be shipped anywhere logs go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import structlog

from tokensvc.metrics import Metrics

Actor = Literal["admin-api", "cli"]

EVENTS = (
    "client.created",
    "client.updated",
    "client.secret_rotated",
    "client.removed",
    "resource.created",
    "resource.removed",
    "federation.created",
    "federation.removed",
    "grant.revoked",
)

_log = structlog.get_logger("tokensvc.audit")


@dataclass(frozen=True, slots=True)
class Audit:
    actor: Actor
    metrics: Metrics | None = None  # the CLI has no /metrics to count on

    def __call__(self, event: str, **ids: str | int) -> None:
        assert event in EVENTS, event  # a new event needs its place in the list (and docs)
        _log.info(event, audit=True, actor=self.actor, **ids)
        if self.metrics is not None:
            self.metrics.admin_changes.labels(event).inc()
