"""The README's snippet for API teams (*DPoP*), extracted and run on proofs made by joserfc:
it accepts a good proof and refuses one made with another key or for another token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.jose import dpop_proof, keypair
from tokensvc.dpopproof import thumbprint, token_hash

README = Path(__file__).resolve().parents[2] / "README.md"
URL = "https://api.example.com/orders"


def _snippet() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## DPoP: tokens bound") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md (DPoP snippet)", "exec"), namespace)  # noqa: S102
    return namespace


def test_the_readme_snippet_checks_a_dpop_bound_token() -> None:
    check_dpop = _snippet()["check_dpop"]
    key, token = keypair(), "header.payload.signature"
    claims = {"cnf": {"jkt": thumbprint(key.as_dict(private=False))}}
    proof = dpop_proof(key, URL, htm="GET", ath=token_hash(token))
    check_dpop(proof, token, claims, "GET", URL, set())
    with pytest.raises(ValueError, match="another key"):
        check_dpop(proof, token, {"cnf": {"jkt": "x"}}, "GET", URL, set())
    with pytest.raises(ValueError, match="another token"):
        check_dpop(proof, "another.token.value", claims, "GET", URL, set())
    with pytest.raises(ValueError, match="replayed"):
        seen: set[str] = set()
        check_dpop(proof, token, claims, "GET", URL, seen)
        check_dpop(proof, token, claims, "GET", URL, seen)
