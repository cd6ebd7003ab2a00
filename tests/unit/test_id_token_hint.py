"""`tokensvc.login.idtokenhint`: which tokens identify a session, and how often the published
keys are fetched (kept for a while; fetched again for a key announced since, but forged key
ids cannot make the front-end ask the token service more than once per interval)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Clock
from tests.jose import assertion, keypair, public_jwks
from tokensvc.login.idtokenhint import KEYS_TTL, REFETCH_INTERVAL, HintVerifier, InvalidHint

ISSUER = "https://id.example.com"


class PublishedKeys:
    """Stands in for the internal API's `GET /internal/jwks`: counts the fetches."""

    def __init__(self, *keys: Any) -> None:
        self.jwks = public_jwks(*keys)
        self.fetches = 0

    async def published_keys(self) -> dict[str, Any]:
        self.fetches += 1
        return self.jwks


def id_token(key: Any, **claims: Any) -> str:
    return assertion(key, **{"iss": ISSUER, "sub": "user-1", "aud": "app", "sid": "s1", **claims})


async def test_identifies_the_person_session_and_client_even_when_expired() -> None:
    key = keypair()
    verifier = HintVerifier(PublishedKeys(key), ISSUER, Clock(0))  # type: ignore[arg-type]
    hint = await verifier.verify(id_token(key, exp=1, iat=0))
    assert (hint.sub, hint.sid, hint.client_id) == ("user-1", "s1", "app")
    assert hint.names("app") and not hint.names("other")
    several = await verifier.verify(id_token(key, aud=["app", "api"]))
    assert several.client_id is None and several.names("api")


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://elsewhere.example.com"},
        {"sub": ""},
        {"sub": None},
        {"aud": None},
        {"aud": []},
        {"aud": [1]},
        {"sid": 7},
        {"events": {"http://schemas.openid.net/event/backchannel-logout": {}}},
    ],
)
async def test_refuses_what_is_not_an_id_token_of_ours(claims: dict[str, Any]) -> None:
    key = keypair()
    verifier = HintVerifier(PublishedKeys(key), ISSUER, Clock(0))  # type: ignore[arg-type]
    with pytest.raises(InvalidHint):
        await verifier.verify(id_token(key, **claims))


async def test_refuses_an_access_token() -> None:
    from joserfc import jwt

    key = keypair()
    verifier = HintVerifier(PublishedKeys(key), ISSUER, Clock(0))  # type: ignore[arg-type]
    header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid}
    token = jwt.encode(header, {"iss": ISSUER, "sub": "u", "aud": "app"}, key)
    with pytest.raises(InvalidHint, match="not an ID Token"):
        await verifier.verify(token)


async def test_keys_are_kept_then_fetched_again_for_a_new_key_but_not_for_forged_ones() -> None:
    old, new = keypair(), keypair()
    published = PublishedKeys(old)
    clock = Clock(1000.0)
    verifier = HintVerifier(published, ISSUER, clock)  # type: ignore[arg-type]
    await verifier.verify(id_token(old))
    await verifier.verify(id_token(old))
    assert published.fetches == 1
    # A key announced since: fetched again once the kept set is a little old.
    published.jwks = public_jwks(old, new)
    clock.advance(REFETCH_INTERVAL + 1)
    await verifier.verify(id_token(new))
    assert published.fetches == 2
    # Forged tokens naming unknown keys: at most one fetch per interval, however many come.
    for _ in range(20):
        with pytest.raises(InvalidHint):
            await verifier.verify(id_token(keypair()))
    assert published.fetches == 2
    clock.advance(REFETCH_INTERVAL + 1)
    for _ in range(20):
        with pytest.raises(InvalidHint):
            await verifier.verify(id_token(keypair()))
    assert published.fetches == 3
    # And the kept set expires on its own.
    clock.advance(KEYS_TTL + 1)
    await verifier.verify(id_token(old))
    assert published.fetches == 4
