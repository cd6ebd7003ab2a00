"""structlog set-up: one JSON event per request in production, readable lines on a terminal.

Nothing secret is ever passed to a logger; `_drop_secrets` is a second line of defence that
removes any field whose name says it holds one, should a future change try.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import orjson
import structlog

_SECRET_FIELDS = frozenset({
    "code", "code_verifier", "client_secret", "refresh_token", "access_token", "id_token",
    "password", "token", "authorization", "secret", "internal_token", "cookie",
})


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_FIELDS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure(fmt: str = "json", file: IO[Any] | None = None, *, cache: bool = True) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    if fmt == "json":
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(file or sys.stdout.buffer)
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=False)]
        factory = structlog.PrintLoggerFactory(file or sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )
