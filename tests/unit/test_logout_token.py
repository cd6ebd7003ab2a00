"""The logout token (OIDC Back-Channel Logout 1.0 §2.4), verified with joserfc against the
published keys as a relying party would, and checked as §2.6 has a receiver check it."""

from __future__ import annotations

import time

from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.tokens import LOGOUT_TOKEN_TTL, TokenMinter

ISSUER = "https://issuer.example"


def test_a_logout_token_has_what_section_2_4_asks_and_no_nonce() -> None:
    keys = keyset_from_jwks(generate_jwks())
    minter = TokenMinter(ISSUER, keys, 300, lambda n: b"\x01" * n)
    now = int(time.time())
    token = minter.logout_token(client_id="app", sub="user-1", sid="sid-1", jti="j-1", now=now)
    decoded = jwt.decode(token, JoseKeySet.import_key_set(keys.public_jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == "logout+jwt"
    assert decoded.header["kid"] == keys.signer.kid
    assert decoded.claims == {
        "iss": ISSUER,
        "aud": "app",
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": "j-1",
        "sub": "user-1",
        "sid": "sid-1",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    assert "nonce" not in decoded.claims  # §2.6 step 5: a receiver refuses one with a nonce
