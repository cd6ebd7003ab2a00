"""Secrets are compared in constant time (SPEC; STYLE: "avoid `==` on secrets").

Over HTTP, a spy stands in for the `hmac` module of `tokensvc.opaque` (client secrets),
`tokensvc.pkce` (code verifiers) and `tokensvc.http.internal` (the internal bearer) and records
what `compare_digest` was given, for a right and a wrong value. A static scan of `tokensvc/`
finds no `==`, `!=` or `in` between two non-constant values that name a secret.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest

import tokensvc
import tokensvc.http.internal
import tokensvc.opaque
import tokensvc.pkce
from tests.fuzz.stack import Stack
from tests.harness import INTERNAL_TOKEN, pkce_pair
from tokensvc.opaque import b64url_decode


@pytest.fixture(scope="module")
def backend() -> str:
    return "memory"


class CompareSpy:
    """Stands in for a module's `hmac`: records `compare_digest`'s operands, delegates all."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def compare_digest(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return hmac.compare_digest(a, b)

    def __getattr__(self, name: str) -> Any:
        return getattr(hmac, name)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> CompareSpy:
    spy = CompareSpy()
    monkeypatch.setattr(request.param, "hmac", spy)
    return spy


@pytest.mark.parametrize("spy", [tokensvc.opaque], indirect=True)
@pytest.mark.parametrize("right", [True, False])
def test_client_secret_is_compared_with_compare_digest(
    token_stack: Stack, spy: CompareSpy, right: bool
) -> None:
    party = token_stack.world.parties["machine"]
    assert party.client.secret_hash is not None and party.secret is not None
    _, salt, digest = party.client.secret_hash.split("$")
    presented = party.secret if right else party.secret[:-1] + "x"
    reply = token_stack.run(
        token_stack.harness.token(party.client, presented, grant_type="client_credentials")
    )
    assert reply.status == (200 if right else 401), reply
    keyed = hmac.new(b64url_decode(salt), presented.encode(), hashlib.sha256).digest()
    assert spy.calls == [(b64url_decode(digest), keyed)]


@pytest.mark.parametrize("spy", [tokensvc.pkce], indirect=True)
@pytest.mark.parametrize("right", [True, False])
def test_code_verifier_is_compared_with_compare_digest(
    token_stack: Stack, spy: CompareSpy, right: bool
) -> None:
    h, party = token_stack.harness, token_stack.world.parties["public"]
    code, verifier = token_stack.run(h.mint_code(party.client))
    assert verifier is not None
    presented = verifier if right else pkce_pair()[0]
    reply = token_stack.run(h.exchange(party.client, None, code, presented))
    assert reply.status == (200 if right else 400), reply
    challenge = tokensvc.pkce.challenge_for(verifier)
    assert spy.calls == [(tokensvc.pkce.challenge_for(presented), challenge)]


@pytest.mark.parametrize("spy", [tokensvc.http.internal], indirect=True)
@pytest.mark.parametrize("right", [True, False])
def test_internal_bearer_is_compared_with_compare_digest(
    token_stack: Stack, spy: CompareSpy, right: bool
) -> None:
    h, party = token_stack.harness, token_stack.world.parties["basic"]
    presented = INTERNAL_TOKEN if right else INTERNAL_TOKEN[:-1] + "x"
    reply = token_stack.run(
        h.internal("GET", f"/internal/clients/{party.client_id}", bearer=presented)
    )
    assert reply.status == (200 if right else 401), reply
    assert spy.calls == [(presented.encode(), INTERNAL_TOKEN.encode())]


# ---------------------------------------------------------------------------- static scan

SENSITIVE = re.compile(
    r"secret|verifier|challenge|token_hash|internal_token|password|digest"
    r"|csrf|bearer|presented",
    re.IGNORECASE,
)
EQUALITY = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _constant(node: ast.expr) -> bool:
    """A literal or an ALL_CAPS constant: comparing to one reveals nothing secret."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return isinstance(node, ast.Constant) or (name is not None and name.isupper())


def _names_a_secret(node: ast.expr) -> bool:
    return any(
        SENSITIVE.search(getattr(n, "id", None) or getattr(n, "attr", None) or "")
        for n in ast.walk(node)
    )


def variable_time_comparisons(source: str) -> list[str]:
    """`==`, `!=`, `in` between two non-constant operands, one of which names a secret."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, a, b in zip(node.ops, operands, operands[1:], strict=False):
            if (
                isinstance(op, EQUALITY)
                and not _constant(a)
                and not _constant(b)
                and (_names_a_secret(a) or _names_a_secret(b))
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_flags_a_plain_comparison_of_secrets() -> None:
    bad = (
        "def check(client, presented, expected_digest, verifier, challenge):\n"
        "    return (client.secret_hash == presented or expected_digest != presented\n"
        "            or challenge_for(verifier) == challenge)\n"
    )
    assert len(variable_time_comparisons(bad)) == 3
    fine = "def f(scheme, presented):\n    return scheme != SCHEME or presented[:7] == 'bearer '\n"
    assert variable_time_comparisons(fine) == []


def test_no_secret_is_compared_with_equality_in_tokensvc() -> None:
    root = Path(tokensvc.__file__).parent
    found = {
        str(path.relative_to(root)): hits
        for path in sorted(root.rglob("*.py"))
        if (hits := variable_time_comparisons(path.read_text()))
    }
    assert found == {}
