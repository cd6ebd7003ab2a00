"""Bugs the fuzz found, one test each, over memory and Redis + Postgres (where the store-level
ones showed: Postgres text holds no NUL and bigint ends at 2**63 - 1, and a driver error there
becomes a 503, wrong for bad input)."""

from __future__ import annotations

import asyncio
import base64
import gzip
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from tests.fuzz.rawhttp import address, parse, request_bytes, roundtrip
from tests.fuzz.stack import Stack
from tests.harness import INTERNAL_TOKEN
from tokensvc.http.forms import FORM
from tokensvc.http.internal import MAX_CLAIMS_DEPTH, MAX_CLAIMS_VALUES, MAX_EPOCH


def test_nul_in_a_client_id_is_an_unknown_client_not_a_store_error(token_stack: Stack) -> None:
    h, party = token_stack.harness, token_stack.world.parties["basic"]
    reply = token_stack.run(h.internal("GET", f"/internal/clients/{party.client_id}%00"))
    assert reply.status == 404 and reply.body["error"] == "not_found", reply


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=client_credentials&client_id={id}%00",
        b"grant_type=client_credentials&client_id={id}\x00",
        b"grant_type=refresh_token&refresh_token=a%00&client_id={id}",
    ],
)
def test_nul_in_a_form_parameter_is_invalid_request_not_a_store_error(
    token_stack: Stack, body: bytes
) -> None:
    h, party = token_stack.harness, token_stack.world.parties["public"]
    for path in ("/token", "/introspect", "/revoke"):
        reply = token_stack.run(
            h.post_token(
                body.replace(b"{id}", party.client_id.encode()),
                headers={"Content-Type": FORM},
                path=path,
            )
        )
        assert reply.status == 400 and reply.body["error"] == "invalid_request", reply
        assert "NUL" in reply.body["error_description"]


def test_nul_in_a_basic_client_id_is_invalid_client_not_a_store_error(token_stack: Stack) -> None:
    h, party = token_stack.harness, token_stack.world.parties["machine"]
    reply = token_stack.run(
        h.post_token(
            {"grant_type": "client_credentials"},
            basic=(party.client_id + "\x00", party.secret or ""),
        )
    )
    assert reply.status == 401 and reply.body["error"] == "invalid_client", reply
    assert reply.headers["WWW-Authenticate"].startswith("Basic")


def _mint_body(stack: Stack, **change: Any) -> dict[str, Any]:
    """A valid `/internal/codes` body for the basic client, with `change` applied."""
    party = stack.world.parties["basic"]
    return {
        "client_id": party.client_id,
        "redirect_uri": party.client.redirect_uris[0],
        "scope": "openid",
        "sub": "ada",
        "auth_time": int(stack.harness.clock()),
        **change,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"sub": "ada\x00"},
        {"nonce": "\x00"},
        {"claims": {"name": "A\x00da"}},
        {"claims": {"\x00": 1}},
        {"amr": ["pwd\x00"]},
        {"auth_time": MAX_EPOCH + 1},
        {"auth_time": 2**63},
        {"auth_time": 2**64 - 1},
    ],
)
def test_a_code_its_exchange_could_not_store_is_refused_at_mint(
    token_stack: Stack, change: dict[str, Any]
) -> None:
    h = token_stack.harness
    body = _mint_body(token_stack, **change)
    reply = token_stack.run(h.internal("POST", "/internal/codes", json=body))
    assert reply.status == 400 and reply.body["error"] == "invalid_request", reply


def test_the_latest_auth_time_accepted_is_redeemable(token_stack: Stack) -> None:
    h, party = token_stack.harness, token_stack.world.parties["basic"]
    code, verifier = token_stack.run(h.mint_code(party.client, auth_time=MAX_EPOCH))
    reply = token_stack.run(h.exchange(party.client, party.secret, code, verifier))
    assert reply.status == 200, reply


async def _body_after_continue(
    url: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """Send the headers with `Expect: 100-continue`, and the body only once the handler has
    started (aiohttp sends 100 Continue just before calling it), so the handler reads it."""
    host, port = address(url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = request_bytes(
            "POST",
            path,
            [*headers, ("Expect", "100-continue"), ("Content-Length", str(len(body)))],
            length=False,
        )
        writer.write(head)
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        writer.write(body)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_body_that_does_not_decode_is_invalid_request_not_server_error(
    token_stack: Stack, coding: str
) -> None:
    h = token_stack.harness
    for url, path, extra in (
        (h.public_url, "/token", [("Content-Type", FORM)]),
        (h.internal_url, "/internal/codes", [("Authorization", f"Bearer {INTERNAL_TOKEN}")]),
    ):
        raw = token_stack.run(
            _body_after_continue(
                url, path, [*extra, ("Content-Encoding", coding)], b"this is not " + coding.encode()
            )
        )
        reply = parse(raw)
        assert reply.status == 400 and reply.json()["error"] == "invalid_request", reply
        assert reply.headers["connection"] == "close"  # the rest of the stream is not trusted
        assert token_stack.run(h.get("/healthz")).status == 200


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Bearer " + INTERNAL_TOKEN.encode() + b"\xc3", "Bearer é".encode()],
)
def test_an_internal_bearer_that_is_not_ascii_is_401_not_server_error(
    token_stack: Stack, value: bytes
) -> None:
    raw = request_bytes("GET", "/internal/clients/x", [("Authorization", value)])
    reply = token_stack.run(roundtrip(token_stack.harness.internal_url, raw))
    assert reply.status == 401 and reply.json() == {  # type: ignore[comparison-overlap]
        "error": "unauthorized",
        "error_description": "A valid internal bearer is required.",
    }
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "value",
    [
        b"Basic \xff\xfe",
        "Basic é".encode(),
        b"Basic " + base64.b64encode(b"\xff:\xfe"),
        b"Basic " + base64.b64encode(quote("\x00").encode() + b":x"),
    ],
)
def test_a_basic_header_that_is_not_ascii_is_invalid_client(
    token_stack: Stack, value: bytes
) -> None:
    raw = request_bytes(
        "POST",
        "/token",
        [("Content-Type", FORM), ("Authorization", value)],
        b"grant_type=client_credentials",
    )
    reply = token_stack.run(roundtrip(token_stack.harness.public_url, raw))
    assert reply.status == 401 and reply.json()["error"] == "invalid_client", reply  # type: ignore[index]


def test_a_login_form_that_does_not_decode_is_a_400_page_not_server_error(
    login_stack: Stack,
) -> None:
    assert login_stack.login is not None
    raw = login_stack.run(
        _body_after_continue(
            login_stack.login.url,
            "/login",
            [("Content-Type", FORM), ("Content-Encoding", "gzip")],
            b"interaction=x&csrf=y",
        )
    )
    reply = parse(raw)
    assert reply.status == 400 and reply.headers["content-type"].startswith("text/html"), reply
    assert reply.headers["connection"] == "close"


# ---------------------------------------------------------------------------- review, round two


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"access_token=\xff"),
        ({"Content-Encoding": "gzip, gzip"}, gzip.compress(gzip.compress(b"access_token=x"))),
        ({}, b"access_token=a&access_token=b"),
    ],
    ids=["not utf-8", "gzip twice", "twice"],
)
def test_userinfo_reads_its_form_with_the_token_endpoints_decoder(
    token_stack: Stack, headers: dict[str, str], body: bytes
) -> None:
    h = token_stack.harness
    reply = token_stack.run(
        h.post_token(body, headers={"Content-Type": FORM, **headers}, path="/userinfo")
    )
    assert reply.status == 400 and reply.body["error"] == "invalid_request", reply


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


DEEP = "__deep__"  # where `_with_depth` splices nesting no JSON encoder would write


def _with_depth(body: dict[str, Any], depth: int) -> bytes:
    nested = b"[" * (depth - 1) + b'"leaf"' + b"]" * (depth - 1)
    return orjson.dumps(body).replace(orjson.dumps(DEEP), nested)


@pytest.mark.parametrize(
    ("claims", "depth"),
    [
        ({"deep": DEEP}, 300),  # once a 500: the code's record could not be encoded
        ({"deep": DEEP}, 700),  # once a 500: the NUL check hit the recursion limit
        ({"deep": DEEP}, MAX_CLAIMS_DEPTH),  # one level too deep inside `claims`
        ({f"c{i}": i for i in range(MAX_CLAIMS_VALUES)}, 0),  # one value too many
    ],
    ids=["300 levels", "700 levels", "just too deep", "too many values"],
)
def test_claims_beyond_their_bounds_are_refused_at_mint(
    token_stack: Stack, claims: dict[str, Any], depth: int
) -> None:
    body = _mint_body(token_stack, claims=claims)
    reply = token_stack.run(_internal_raw(token_stack, _with_depth(body, depth)))
    assert reply.status == 400 and reply.json()["error"] == "invalid_request", reply


def test_claims_within_their_bounds_are_minted_and_redeemable(token_stack: Stack) -> None:
    h, party = token_stack.harness, token_stack.world.parties["basic"]
    claims = {"deep": _nested(MAX_CLAIMS_DEPTH - 1)}
    claims.update({f"c{i}": i for i in range(MAX_CLAIMS_VALUES - MAX_CLAIMS_DEPTH - 1)})
    code, verifier = token_stack.run(h.mint_code(party.client, claims=claims))
    reply = token_stack.run(h.exchange(party.client, party.secret, code, verifier))
    assert reply.status == 200, reply


async def _internal_raw(stack: Stack, body: bytes) -> Any:
    h = stack.harness
    raw = request_bytes(
        "POST",
        "/internal/codes",
        [("Authorization", f"Bearer {INTERNAL_TOKEN}"), ("Content-Type", "application/json")],
        body,
    )
    return await roundtrip(h.internal_url, raw)
