"""The private JWKS file: validation, rotation, publication, and the direct signer."""

from __future__ import annotations

import copy

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tokensvc.signing.keys import generate_jwks, keyset_from_jwks, rotated


def test_rotation_keeps_old_keys_published_and_verifying() -> None:
    first = generate_jwks("ES256")
    old = keyset_from_jwks(first)
    token = old.signer.sign({"sub": "a"}, "at+jwt")
    new = keyset_from_jwks(rotated(first))
    assert new.kid != old.kid
    assert [k["kid"] for k in new.public_jwks["keys"]] == [old.kid, new.kid]
    published = JoseKeySet.import_key_set(new.public_jwks)
    assert jwt.decode(token, published, algorithms=["ES256"]).claims == {"sub": "a"}
    fresh = new.signer.sign({"sub": "b"}, "JWT")
    decoded = jwt.decode(fresh, published, algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "kid": new.kid, "typ": "JWT"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j.update(keys=[]), "non-empty"),
        (lambda j: j["keys"].append("junk"), "JSON object"),
        (lambda j: j["keys"][0].update(active=False), "exactly one key"),
        (lambda j: j["keys"][0].update(alg="HS256"), "alg must be one of"),
        (lambda j: j["keys"][0].pop("kid"), "unique string 'kid'"),
        (lambda j: j["keys"][0].pop("d"), "private key is required"),
        (lambda j: j["keys"][0].update(x="bad"), "key"),
    ],
)
def test_bad_key_files_are_refused(mutate, message: str) -> None:
    jwks = copy.deepcopy(generate_jwks("ES256"))
    mutate(jwks)
    with pytest.raises(ValueError, match=message):
        keyset_from_jwks(jwks)


def test_at_hash_is_left_half_of_the_alg_hash() -> None:
    import base64
    import hashlib

    signer = keyset_from_jwks(generate_jwks("ES256")).signer
    digest = hashlib.sha256(b"token").digest()[:16]
    assert signer.half_hash("token") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    ed = keyset_from_jwks(generate_jwks("EdDSA")).signer
    digest = hashlib.sha512(b"token").digest()[:32]
    assert ed.half_hash("token") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
