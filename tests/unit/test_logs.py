"""The production log sink: lines of one event-loop turn leave in one write, in order."""

from __future__ import annotations

import asyncio
import io

import orjson
import structlog

from tests.conftest import LogSink
from tokensvc import logs


class CountingFile(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def test_lines_of_one_loop_turn_are_written_once() -> None:
    out = CountingFile()
    sink = logs.BufferedLines(out)

    async def burst() -> None:
        for i in range(5):
            sink.msg(orjson.dumps({"n": i}))
        assert out.writes == 0  # nothing yet: the turn is not over
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert out.writes == 1
    assert [orjson.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(5))


def test_without_a_loop_a_line_is_written_at_once() -> None:
    out = CountingFile()
    logs.BufferedLines(out).msg(b'{"a":1}')
    assert out.getvalue() == b'{"a":1}\n'


def test_configured_json_line_shape(log_sink) -> None:
    out = io.BytesIO()
    logs.configure("json", out, cache=False, buffered=False)
    try:
        structlog.get_logger("t").info("request", status=200, password="hunter2")
        event = orjson.loads(out.getvalue())
        assert event["event"] == "request" and event["level"] == "info"
        assert event["password"] == "[redacted]"
        assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 24
    finally:  # give the session's capture back its sink
        logs.configure("json", log_sink, cache=False, buffered=False)


def test_a_traceback_shows_frames_but_never_their_locals(log_sink: LogSink) -> None:
    """An unhandled error's log line names where it happened; the handler's locals (the
    refresh token it was rotating) stay out of it."""
    secret = "rt-0123456789abcdefghijklmnop"

    def rotate(presented: str) -> None:
        raise ValueError("boom")

    mark = log_sink.mark()
    try:
        rotate(secret)
    except ValueError:
        structlog.get_logger("t").exception("unhandled")
    (event,) = log_sink.events(mark)
    assert event["exception"][0]["frames"][-1]["name"] == "rotate"
    assert secret not in orjson.dumps(event).decode()
