"""The one claim-release rule (OIDC Core §5.4), `tokensvc.claims.claims_for_scope`, and the ID
token minter applying it to the scope of the token it issues."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from tokensvc.claims import SCOPE_CLAIMS, claims_for_scope, released_claims
from tokensvc.models import Grant, User
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.tokens import TokenMinter

EVERYTHING = {
    "name": "Ada",
    "given_name": "Ada",
    "email": "ada@example.com",
    "email_verified": True,
    "address": {"country": "GB"},
    "phone_number": "+44",
    "phone_number_verified": False,
    "groups": ["admin"],  # no scope covers it
    "sub": "someone-else",  # nor the registered claims
    "iss": "https://evil.example",
}


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid", set()),
        ("", set()),
        ("openid  email", {"email", "email_verified"}),  # an empty item covers nothing
        ("openid email", {"email", "email_verified"}),
        ("profile", {"name", "given_name"}),
        ("openid address phone", {"address", "phone_number", "phone_number_verified"}),
        ("openid Email PROFILE", set()),  # scope values are case-sensitive (RFC 6749 §3.3)
        (
            "openid profile email address phone offline_access",
            set(EVERYTHING) - {"groups", "sub", "iss"},
        ),
    ],
)
def test_claims_for_scope(scope: str, expected: set[str]) -> None:
    assert claims_for_scope(EVERYTHING, scope) == {k: EVERYTHING[k] for k in expected}


def test_every_scope_claim_is_covered_by_one_scope() -> None:
    names = [c for claims in SCOPE_CLAIMS.values() for c in claims]
    assert len(names) == len(set(names))


def test_released_claims_is_the_same_rule() -> None:
    user = User("u", "ada", "h", email="ada@example.com", name="Ada", email_verified=True)
    assert released_claims(user, "openid") == {}
    assert released_claims(user, "openid email") == {
        "email": "ada@example.com",
        "email_verified": True,
    }
    assert released_claims(user, "openid profile") == {"name": "Ada"}
    assert released_claims(User("u", "ada", "h"), "openid profile email") == {}


def _payload(token: str) -> dict[str, object]:
    segment = token.split(".")[1]
    claims: dict[str, object] = orjson.loads(base64.urlsafe_b64decode(segment + "=="))
    return claims


def test_id_token_releases_what_the_issued_scope_covers() -> None:
    keys = keyset_from_jwks(generate_jwks("ES256"))
    minter = TokenMinter("https://issuer.example", keys, 300, lambda n: b"\x01" * n)
    now = int(time.time())
    grant = Grant(
        grant_id="g",
        client_id="c",
        sub="s",
        scope="openid profile email",
        auth_time=now,
        claims=dict(EVERYTHING),
    )

    def person(**kwargs: str) -> set[str]:
        token = minter.id_token(grant=grant, access_token="at", now=now, **kwargs)
        claims = _payload(token)
        assert claims["sub"] == "s" and claims["iss"] == "https://issuer.example"
        return set(claims) & (set(EVERYTHING) - {"sub", "iss"})

    assert person() == {"name", "given_name", "email", "email_verified"}  # the grant's scope
    assert person(scope="openid") == set()
    assert person(scope="openid email") == {"email", "email_verified"}
