"""`signing.verify.VerifiedTokens`: a token's signature is checked once, while its expiry and
its signing key's publication are checked at every use."""

from __future__ import annotations

import secrets
import time

import pytest

from tokensvc.signing import verify
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.tokens import TokenMinter

ISSUER = "https://issuer.example"


def _token(keys: object, now: int, ttl: int = 300) -> str:
    minter = TokenMinter(ISSUER, keys, ttl, secrets.token_bytes)  # type: ignore[arg-type]
    return minter.access_token(sub="s", client_id="c", scope="a", now=now)


def test_the_signature_is_checked_once_and_the_expiry_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = keyset_from_jwks(generate_jwks("ES256"))
    now = int(time.time())
    token = _token(keys, now, ttl=60)
    calls: list[str] = []
    real = verify.verify_access_token

    def counting(*args: object) -> dict[str, object]:
        calls.append("verify")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "verify_access_token", counting)
    cache = verify.VerifiedTokens()
    first = cache.claims(token, keys, ISSUER, now)
    first["sub"] = "changed by a caller"  # a copy: the remembered claims stay as they were
    assert cache.claims(token, keys, ISSUER, now + 30)["sub"] == "s"
    assert calls == ["verify"]
    with pytest.raises(verify.InvalidToken, match="expired"):
        cache.claims(token, keys, ISSUER, now + 61)
    assert calls == ["verify", "verify"]


def test_a_token_whose_key_is_no_longer_published_is_checked_again_and_refused() -> None:
    keys, other = (keyset_from_jwks(generate_jwks("ES256")) for _ in range(2))
    now = int(time.time())
    token = _token(keys, now)
    cache = verify.VerifiedTokens()
    assert cache.claims(token, keys, ISSUER, now)["client_id"] == "c"
    with pytest.raises(verify.InvalidToken):
        cache.claims(token, other, ISSUER, now)


def test_a_forged_token_is_never_remembered() -> None:
    keys = keyset_from_jwks(generate_jwks("ES256"))
    now = int(time.time())
    head, body, sig = _token(keys, now).split(".")
    forged = f"{head}.{body}.{sig[::-1]}"
    cache = verify.VerifiedTokens()
    for _ in range(2):
        with pytest.raises(verify.InvalidToken):
            cache.claims(forged, keys, ISSUER, now)
