"""`POST /token` under hostile forms (RFC 6749 §3.2, §5.2): whatever arrives — parameters
random, repeated, missing, huge or not UTF-8, wrong content types and methods, malformed Basic
headers, any grant_type, verifiers of any length and alphabet — the answer is tokens or a
well-formed error, never a 5xx, and nothing a request did not present is touched."""

from __future__ import annotations

from hypothesis import event, given

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import token_reply
from tests.fuzz.stack import Stack
from tests.fuzz.strategies import Hostile, form_requests, send


def test_token_endpoint_answers_hostile_forms_with_oauth_errors(token_stack: Stack) -> None:
    stack, h = token_stack, token_stack.harness
    sentinel = stack.plant()

    @fuzz(examples=250)
    @given(request=form_requests(stack.world, "/token"))
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        event(f"{reply.status} {token_reply(reply)}")

    probe()
    stack.check(sentinel)
