"""Every form reader under hostile bodies: `/userinfo` (RFC 6750 §2.2) and the login
front-end's `/login` and `/consent`. The bodies are those `/token` is fuzzed with (bytes that
are not UTF-8, broken escapes, JSON or binary, compressed once, twice or in a coding nobody
knows), so a reader that is not the one decoder shows here as a 5xx or a traceback (the stack
checks the log on the way out)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import ROUTING_ERRORS, error_reply, json_body, page_reply
from tests.fuzz.stack import Stack, World
from tests.fuzz.strategies import (
    FORM,
    Hostile,
    content_encoded,
    encoded_form,
    extra_headers,
    mangled,
    rarely,
    send,
    values,
)

USERINFO_ERRORS = frozenset({"invalid_request", "invalid_token", "insufficient_scope"})


@st.composite
def form_posts(draw: st.DrawFn, world: World, path: str, names: tuple[str, ...]) -> Hostile:
    pairs = [(name, draw(values(world))) for name in names if not rarely(draw, 4)]
    body = draw(encoded_form(draw(mangled(pairs, world))))
    headers = [("Content-Type", FORM)] if not rarely(draw, 8) else []
    headers += draw(extra_headers())
    headers, body = draw(content_encoded(headers, body))
    return Hostile("POST", path, tuple(headers), body)


def test_userinfo_reads_any_form_body_without_a_server_error(token_stack: Stack) -> None:
    stack, h = token_stack, token_stack.harness

    @fuzz(examples=120)
    @given(request=form_posts(stack.world, "/userinfo", ("access_token",)))
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        if reply.status == 200:
            assert isinstance(json_body(reply).get("sub"), str), reply
            return
        if reply.status in (401, 403):  # RFC 6750 §3: the challenge says why
            assert reply.headers["WWW-Authenticate"].startswith("Bearer"), reply
            return
        error_reply(reply, USERINFO_ERRORS | ROUTING_ERRORS)

    probe()


def test_login_forms_read_any_body_without_a_server_error(login_stack: Stack) -> None:
    stack, login = login_stack, login_stack.login
    assert login is not None
    fields = ("interaction", "csrf", "username", "password", "decision")

    @fuzz(examples=80)
    @given(
        request=st.sampled_from(("/login", "/consent")).flatmap(
            lambda path: form_posts(stack.world, path, fields)
        )
    )
    def probe(request: Hostile) -> None:
        reply = stack.run(send(stack.harness.http, login.url, request))
        page_reply(reply)
        assert reply.status in (400, 403, 413), (request, reply)  # no live sign-in: refused

    probe()
