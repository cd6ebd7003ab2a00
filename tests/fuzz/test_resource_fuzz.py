"""`POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009) under hostile forms: real
tokens of every client, near misses, JWT-shaped garbage, any client authentication. The answer
is `{"active": …}` (nothing about a dead token), an empty 200, or a well-formed error; never
a 5xx, and a token the fuzz never presented stays active."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import introspection_reply, revocation_reply
from tests.fuzz.stack import Stack
from tests.fuzz.strategies import Hostile, Reply, form_requests, send

ENDPOINTS: dict[str, Callable[[Reply], str | None]] = {
    "/introspect": introspection_reply,
    "/revoke": revocation_reply,
}


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_resource_endpoints_answer_hostile_forms_with_oauth_errors(
    token_stack: Stack, path: str
) -> None:
    stack, h, check = token_stack, token_stack.harness, ENDPOINTS[path]
    sentinel = stack.plant()

    @fuzz(examples=150)
    @given(request=form_requests(stack.world, path, params="token"))
    def probe(request: Hostile) -> None:
        check(stack.run(send(h.http, h.public_url, request)))

    probe()
    stack.check(sentinel)
