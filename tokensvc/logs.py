"""structlog set-up: one JSON event per request in production, readable lines on a terminal.

Nothing secret is ever passed to a logger; `_drop_secrets` is a second line of defence that
removes any field whose name says it holds one, should a future change try.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import time
from collections.abc import Callable
from typing import IO, Any, BinaryIO, TextIO, cast

import orjson
import structlog
import structlog.tracebacks

_SECRET_FIELDS = frozenset(
    {
        "code",
        "code_verifier",
        "client_secret",
        "refresh_token",
        "access_token",
        "id_token",
        "password",
        "token",
        "authorization",
        "secret",
        "internal_token",
        "cookie",
    }
)


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if not _SECRET_FIELDS.isdisjoint(event):  # no set built on the usual, clean path
        for key in _SECRET_FIELDS.intersection(event):
            event[key] = "[redacted]"
    return event


class _Timestamp:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second, not once
    per event (structlog's TimeStamper formats a datetime every time: a hot-path cost)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1000):03d}Z"
        return event


class BufferedLines:
    """A binary sink that gathers the lines written during one turn of the event loop and
    writes them with one system call at its end (and at once when no loop runs), instead of a
    write and a flush per line."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._pending: list[bytes] = []
        self._scheduled = False

    def msg(self, message: bytes) -> None:
        self.line(message + b"\n")

    def line(self, message: bytes) -> None:
        """`message` ends with its newline already (orjson's OPT_APPEND_NEWLINE)."""
        self._pending.append(message)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._scheduled = True
        except RuntimeError:  # no loop: CLI commands, start-up, shutdown
            self.flush()

    log = debug = info = warn = warning = error = err = critical = exception = msg

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            self._file.write(data)
            self._file.flush()


_request_log = structlog.get_logger("tokensvc.request")


def _structlog_request_line(event: dict[str, Any]) -> None:
    _request_log.info("request", **event)


def _json_request_line(sink: Any, stamp: _Timestamp) -> Callable[[dict[str, Any]], None]:
    """The per-request line without structlog's processor chain (a tenth of its cost, and it
    runs on every request). It writes what the JSON chain would: same fields, same redaction."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    write = sink.line if isinstance(sink, BufferedLines) else lambda data: sink.msg(data[:-1])

    def line(event: dict[str, Any]) -> None:
        event["event"] = "request"
        event["level"] = "info"
        write(dumps(_drop_secrets(None, "", stamp(None, "", event)), option=newline))

    return line


# One canonical line per HTTP request; `configure` picks the fastest writer for the format.
request_line: Callable[[dict[str, Any]], None] = _structlog_request_line


def configure(
    fmt: str = "json", file: IO[Any] | None = None, *, cache: bool = True, buffered: bool = True
) -> None:
    global request_line
    stamp = _Timestamp()
    shared: list[Any] = [
        structlog.processors.add_log_level,
        stamp,
        _drop_secrets,
    ]
    if fmt == "json":
        processors = [
            *shared,
            # Frames, never their local variables: a request handler's locals hold the
            # very codes and tokens no log line may carry (structlog shows them by default).
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        if buffered:
            sink: Any = BufferedLines(file or sys.stdout.buffer)
            atexit.register(sink.flush)
        else:
            sink = structlog.BytesLogger(cast("BinaryIO", file or sys.stdout.buffer))
        factory: Any = lambda *_: sink  # noqa: E731 - structlog wants a factory
        request_line = _json_request_line(sink, stamp)
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=False)]
        factory = structlog.PrintLoggerFactory(cast("TextIO", file or sys.stdout))
        request_line = _structlog_request_line
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )
