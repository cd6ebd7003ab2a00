"""Two findings of an adversarial review, over real sockets on every listener (token public,
token internal, login front-end), on the production runner (`tokensvc.http.server`):

* a client that closes its connection in the middle of a body is not a server error: its
  request line and `tokensvc_http_requests_total` say `499` (nginx's "client closed request"),
  it costs one log line and no traceback, and no `server_error` is counted;
* what the HTTP parser refuses (a malformed header line, say) is answered with a fixed body,
  never aiohttp's, which echoes the offending line (an `Authorization` header included), and
  with the security headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fuzz.rawhttp import address, request_bytes, roundtrip
from tests.fuzz.stack import Stack
from tests.harness import INTERNAL_TOKEN
from tokensvc.http.forms import FORM
from tokensvc.login.app import SECURITY_HEADERS

BEARER = ("Authorization", f"Bearer {INTERNAL_TOKEN}")
PARTIAL = b"zq7Kp"  # the five body bytes sent of the hundred announced
SECRET = b"SECRET-XYZ"
LISTENERS = ("public", "internal", "login")


@pytest.fixture(scope="module")
def backend() -> str:
    """Both findings are the HTTP layer's: memory stores are enough."""
    return "memory"


def _upload_target(stack: Stack, listener: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Base URL, route and headers of an endpoint that reads a body, on `listener`."""
    h = stack.harness
    assert stack.login is not None
    return {
        "public": (h.public_url, "/token", [("Content-Type", FORM)]),
        "internal": (
            h.internal_url,
            "/internal/codes",
            [BEARER, ("Content-Type", "application/json")],
        ),
        "login": (stack.login.url, "/login", [("Content-Type", FORM)]),
    }[listener]


# ---------------------------------------------------------------------------- A: aborted upload


async def _abort_upload(
    url: str, path: str, headers: list[tuple[str, str]], *, reset: bool, expect: bool
) -> None:
    """Announce 100 body bytes, send five, and close (a FIN) or reset (an RST) the connection
    while the handler waits for the rest. With `expect`, the five bytes go only once aiohttp
    has sent `100 Continue`, i.e. once the handler runs; without, after a pause."""
    host, port = address(url)
    reader, writer = await asyncio.open_connection(host, port)
    extra = [("Expect", "100-continue")] if expect else []
    head = request_bytes("POST", path, [*headers, *extra, ("Content-Length", "100")], length=False)
    writer.write(head)
    await writer.drain()
    if expect:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(PARTIAL)
    await writer.drain()
    if not expect:
        await asyncio.sleep(0.2)
    if reset:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _request_lines(log_sink: Any, mark: int, path: str) -> list[dict[str, Any]]:
    """The request lines for `path` since `mark`, once there is one (bounded wait)."""
    for _ in range(200):
        lines = [
            e for e in log_sink.events(mark) if e["event"] == "request" and e.get("path") == path
        ]
        if lines:
            await asyncio.sleep(0.05)  # anything logged just after it
            return lines
        await asyncio.sleep(0.025)
    raise AssertionError(f"no request line for {path}: {log_sink.events(mark)}")


async def _request_counts(stack: Stack) -> dict[tuple[str, str, str], float]:
    """`tokensvc_http_requests_total` of the token service (both listeners share it), read
    over a raw socket and with prometheus-client's parser."""
    reply = await roundtrip(stack.harness.public_url, request_bytes("GET", "/metrics", []))
    assert reply.status == 200, reply
    counts = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        if family.name == "tokensvc_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    key = (labels["endpoint"], labels["method"], labels["status"])
                    counts[key] = sample.value
        if family.name == "tokensvc_oauth_errors":
            for sample in family.samples:
                assert sample.labels["error"] != "server_error", sample
    return counts


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize(
    "how", ["close after 100-continue", "reset after 100-continue", "close, no expect"]
)
def test_a_client_that_goes_away_mid_body_is_499_not_a_server_error(
    login_stack: Stack, listener: str, how: str, log_sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, path, headers = _upload_target(login_stack, listener)
    before = login_stack.run(_request_counts(login_stack))
    mark = log_sink.mark()
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        login_stack.run(
            _abort_upload(url, path, headers, reset=how.startswith("reset"), expect="100" in how)
        )
        lines = login_stack.run(_request_lines(log_sink, mark, path))
    events = log_sink.events(mark)

    assert [(e["status"], e["method"]) for e in lines] == [(499, "POST")], lines
    assert "error" not in lines[0], lines  # no server_error, nor any other error code
    closed = [e for e in events if e["event"] == "client closed the connection"]
    assert [(e["method"], e["path"]) for e in closed] == [("POST", path)], events
    for event in events:
        assert "exception" not in event and "traceback" not in str(event).lower(), event
        assert event["event"] != "unhandled" and event.get("status") != 500, event
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records
    ]
    text = b"\n".join(log_sink.lines[mark:])
    assert PARTIAL not in text and b"100-continue" not in text  # never the request's bytes
    log_sink.assert_clean(mark, login_stack.harness.secrets)

    after = login_stack.run(_request_counts(login_stack))
    assert not [k for k in after if k[2].startswith("5")], after
    if listener != "login":  # the login front-end exports no metrics
        key = (path, "POST", "499")
        assert after.get(key, 0) == before.get(key, 0) + 1, (before, after)
    # and the listener still answers
    health = url if listener != "internal" else login_stack.harness.public_url
    reply = login_stack.run(roundtrip(health, request_bytes("GET", "/healthz", [])))
    assert reply.status == 200, reply


# ---------------------------------------------------------------------------- B: parser 400s


HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
MALFORMED = {
    # a header value with a control character: aiohttp's body quoted the whole line
    "bad header value": HEAD + b"Authorization: Bearer " + SECRET + b"\x01\r\n\r\n",
    "header without colon": HEAD + b"Authorization Bearer " + SECRET + b"\r\n\r\n",
    "bad character in the query": b"GET /token?code=%s\x01 HTTP/1.1\r\n\r\n" % SECRET,
    "header too long": HEAD + b"X-Secret: " + SECRET * 1000 + b"\r\n\r\n",
}
FIXED = {"error": "invalid_request", "error_description": "Bad request."}


def _base(stack: Stack, listener: str) -> str:
    return _upload_target(stack, listener)[0]


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_request_the_parser_refuses_gets_a_fixed_400_that_echoes_nothing(
    login_stack: Stack, listener: str, case: str, log_sink: Any
) -> None:
    mark = log_sink.mark()
    # `roundtrip` reads until the server closes: the connection ends after the answer
    reply = login_stack.run(roundtrip(_base(login_stack, listener), MALFORMED[case]))
    assert reply.status == 400, reply
    assert SECRET not in reply.body and SECRET.lower() not in reply.body.lower(), reply
    assert SECRET.decode() not in str(reply.headers), reply
    assert reply.headers["content-type"].startswith("application/json"), reply
    assert reply.json() == FIXED, reply
    assert reply.headers["cache-control"] == "no-store", reply
    assert reply.headers["x-content-type-options"] == "nosniff", reply
    for name, value in SECURITY_HEADERS.items():  # what the login front-end's pages send
        sent = reply.headers[name.lower()]
        if name == "Content-Security-Policy":  # no styles nor images in an error body
            assert "default-src 'none'" in sent and "frame-ancestors 'none'" in sent, reply
        else:
            assert sent == value, reply
    events = log_sink.events(mark)
    assert [e["event"] for e in events] == ["bad http request"], events
    log_sink.assert_clean(mark, {SECRET.decode(), *login_stack.harness.secrets})
