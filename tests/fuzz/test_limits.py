"""Request size and header limits over real sockets, on the production runner
(`tokensvc.http.server.app_runner`): README, *Limits*.

* a body over 64 KiB (as sent, chunked, or once inflated) is `413` with RFC 6749 error JSON;
* more than 100 form parameters is `400 invalid_request` at the form endpoints;
* a request line or a header over 8190 bytes, or more than 128 headers, is refused by the
  HTTP parser with `400` and the connection closes; the service keeps answering;
* anything aiohttp refuses before a handler runs costs one JSON warning line, no traceback;
* requests that never finish (slowloris) do not hold up anyone else.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Any

import pytest

from tests.fuzz.rawhttp import RawReply, address, request_bytes, roundtrip
from tests.fuzz.stack import Stack
from tests.harness import INTERNAL_TOKEN
from tokensvc.http.forms import FORM, MAX_BODY, MAX_FIELDS
from tokensvc.http.server import MAX_FIELD, MAX_HEADERS, MAX_LINE

BEARER = ("Authorization", f"Bearer {INTERNAL_TOKEN}")
JSON = ("Content-Type", "application/json")


@pytest.fixture(scope="module")
def backend() -> str:
    """Limits are the HTTP layer's: memory stores are enough."""
    return "memory"


def _targets(stack: Stack) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    h = stack.harness
    form = [("Content-Type", FORM)]
    return {
        "/token": (h.public_url, form),
        "/introspect": (h.public_url, form),
        "/revoke": (h.public_url, form),
        "/internal/codes": (h.internal_url, [BEARER, JSON]),
    }


def _oauth_error(reply: RawReply, status: int) -> str:
    assert reply.status == status, reply
    assert reply.headers["content-type"].startswith("application/json"), reply
    assert reply.headers["cache-control"] == "no-store", reply
    body = reply.json()
    assert isinstance(body, dict) and isinstance(body["error_description"], str), reply
    return str(body["error"])


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke", "/internal/codes"])
def test_body_over_the_limit_is_413_oauth_json(token_stack: Stack, path: str) -> None:
    base, headers = _targets(token_stack)[path]
    big = b"a=" + b"b" * MAX_BODY
    reply = token_stack.run(roundtrip(base, request_bytes("POST", path, headers, big)))
    assert _oauth_error(reply, 413) == "invalid_request"


def test_chunked_body_over_the_limit_is_413(token_stack: Stack) -> None:
    chunk = b"b" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 8192 + 1))
    raw = request_bytes(
        "POST",
        "/token",
        [("Content-Type", FORM), ("Transfer-Encoding", "chunked")],
        body + b"0\r\n\r\n",
        length=False,
    )
    reply = token_stack.run(roundtrip(token_stack.harness.public_url, raw))
    assert _oauth_error(reply, 413) == "invalid_request"


def test_body_is_limited_by_what_it_inflates_to(token_stack: Stack) -> None:
    bomb = gzip.compress(b"a=" + b"0" * (16 * MAX_BODY))  # 1 MiB in about 1 KiB
    raw = request_bytes(
        "POST", "/token", [("Content-Type", FORM), ("Content-Encoding", "gzip")], bomb
    )
    assert len(bomb) < MAX_BODY // 16
    reply = token_stack.run(roundtrip(token_stack.harness.public_url, raw))
    assert _oauth_error(reply, 413) == "invalid_request"


def test_body_at_the_limit_is_read(token_stack: Stack) -> None:
    body = b"grant_type=client_credentials&pad=" + b"x" * (MAX_BODY - 34)
    assert len(body) == MAX_BODY
    raw = request_bytes("POST", "/token", [("Content-Type", FORM)], body)
    reply = token_stack.run(roundtrip(token_stack.harness.public_url, raw))
    assert _oauth_error(reply, 401) == "invalid_client"  # read, parsed, then no client


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_more_form_fields_than_the_limit_is_invalid_request(token_stack: Stack, path: str) -> None:
    h = token_stack.harness
    machine = token_stack.world.parties["machine"]
    basic = (machine.client_id, machine.secret or "")

    def form(count: int) -> str:  # grant_type and `count` - 1 others
        return "&".join(["grant_type=client_credentials", *(f"f{i}=1" for i in range(count - 1))])

    within = token_stack.run(
        h.post_token(form(MAX_FIELDS), basic=basic, headers={"Content-Type": FORM})
    )
    assert within.status == 200, within
    over = token_stack.run(
        h.post_token(form(MAX_FIELDS + 1), basic=basic, headers={"Content-Type": FORM}, path=path)
    )
    assert over.status == 400 and over.body["error"] == "invalid_request", over
    assert str(MAX_FIELDS) in over.body["error_description"]


LOGIN_FORMS = {
    "too many fields": (413, [], "&".join(f"f{i}=1" for i in range(1001)).encode()),
    "too large": (413, [], b"a=" + b"b" * MAX_BODY),
    "gzip bomb": (413, [("Content-Encoding", "gzip")], gzip.compress(b"0" * 16 * MAX_BODY)),
}


@pytest.mark.parametrize("case", sorted(LOGIN_FORMS))
def test_login_forms_over_the_limits_get_a_page(login_stack: Stack, case: str) -> None:
    assert login_stack.login is not None
    status, headers, body = LOGIN_FORMS[case]
    for path in ("/login", "/consent"):
        raw = request_bytes("POST", path, [("Content-Type", FORM), *headers], body)
        reply = login_stack.run(roundtrip(login_stack.login.url, raw))
        assert reply.status == status, reply
        assert reply.headers["content-type"].startswith("text/html"), reply


def _protocol_cases() -> dict[str, bytes]:
    form = [("Content-Type", FORM)]
    return {
        "request line too long": request_bytes("GET", "/healthz?" + "a" * MAX_LINE, []),
        "header too long": request_bytes("GET", "/healthz", [("X-Big", "b" * (MAX_FIELD + 1))]),
        "too many headers": request_bytes(
            "GET", "/healthz", [(f"X-H{i}", "1") for i in range(MAX_HEADERS + 1)]
        ),
        "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        "nul in a header": request_bytes("GET", "/healthz", [("X-A", b"a\x00b")]),
        "bad content-length": b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "length and chunked": request_bytes(
            "POST", "/token", [*form, ("Transfer-Encoding", "chunked")], b"0\r\n\r\n"
        ),
        "bad chunk size": request_bytes(
            "POST",
            "/token",
            [*form, ("Transfer-Encoding", "chunked")],
            b"zz\r\nabc\r\n0\r\n\r\n",
            length=False,
        ),
        "undecodable coding": request_bytes(
            "POST", "/token", [*form, ("Content-Encoding", "br")], b"x"
        ),
        "broken gzip": request_bytes(
            "POST", "/token", [*form, ("Content-Encoding", "gzip")], b"not gzip at all"
        ),
        "broken deflate, wrong method": request_bytes(
            "GET", "/token", [*form, ("Content-Encoding", "deflate")], b"not deflate"
        ),
    }


PROTOCOL = _protocol_cases()


@pytest.mark.parametrize("case", sorted(PROTOCOL))
def test_malformed_http_is_refused_with_4xx_and_one_log_line(
    token_stack: Stack, case: str, log_sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    h = token_stack.harness
    mark = log_sink.mark()
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        reply = token_stack.run(roundtrip(h.public_url, PROTOCOL[case]))
        assert 400 <= reply.status < 500, reply
        if reply.headers.get("content-type", "").startswith("application/json"):  # a handler
            assert _oauth_error(reply, reply.status) == (  # answered, before aiohttp refused
                "method_not_allowed" if reply.status == 405 else "invalid_request"
            )
        health = token_stack.run(h.get("/healthz"))
    assert health.status == 200, "the service stopped answering"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records
    ]
    events = log_sink.events(mark)
    for event in events:
        assert "exception" not in event and "traceback" not in str(event).lower(), event
    if not reply.headers.get("content-type", "").startswith("application/json") and (
        case != "not http"
    ):  # TLS or random bytes on the port: not worth a line
        assert [e for e in events if e["event"] == "bad http request"], events


def test_a_header_just_within_the_limit_is_served(token_stack: Stack) -> None:
    h = token_stack.harness
    raw = request_bytes("GET", "/healthz", [("X-Big", "b" * (MAX_FIELD - len("X-Big: ")))])
    assert token_stack.run(roundtrip(h.public_url, raw)).status == 200


async def _slowloris(url: str, path: str, count: int) -> list[asyncio.StreamWriter]:
    """`count` connections each stuck mid-request: half in the headers, half in the body."""
    host, port = address(url)
    writers = []
    for i in range(count):
        _, writer = await asyncio.open_connection(host, port)
        if i % 2:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Ty".encode())
        else:
            writer.write(request_bytes("POST", path, [("Content-Type", FORM)], b"x" * 1000)[:-990])
        await writer.drain()
        writers.append(writer)
    return writers


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_unfinished_requests_do_not_block_others(token_stack: Stack, listener: str) -> None:
    h = token_stack.harness
    machine = token_stack.world.parties["machine"]

    async def scenario() -> None:
        url = h.public_url if listener == "public" else h.internal_url
        path = "/token" if listener == "public" else "/internal/codes"
        stuck = await _slowloris(url, path, 64)
        try:
            for _ in range(3):  # bounded: a stuck service would hit the timeout
                if listener == "public":
                    reply = await asyncio.wait_for(
                        h.token(machine.client, machine.secret, grant_type="client_credentials"), 5
                    )
                else:
                    reply = await asyncio.wait_for(
                        h.internal("GET", f"/internal/clients/{machine.client_id}"), 5
                    )
                assert reply.status == 200, reply
        finally:
            for writer in stuck:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for w in stuck), return_exceptions=True)

    token_stack.run(scenario())
