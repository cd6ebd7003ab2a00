"""The private JWKS file: validation, rotation, publication, and the direct signer."""

from __future__ import annotations

import copy

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tokensvc.signing.keyfile import generate_jwk, generate_jwks, rotated
from tokensvc.signing.keys import keyset_from_jwks

T = 1_800_000_000


def test_rotation_keeps_old_keys_published_and_verifying() -> None:
    first = generate_jwks("ES256", now=T - 100)
    old = keyset_from_jwks(first)
    token = old.at(T).signer.sign({"sub": "a"}, "at+jwt")
    new = keyset_from_jwks(rotated(first, now=T, lead=0))
    state = new.at(T)
    assert state.signer.kid != old.at(T).signer.kid
    assert [k["kid"] for k in state.public_jwks["keys"]] == [old.kids[0], state.signer.kid]
    published = JoseKeySet.import_key_set(state.public_jwks)
    assert jwt.decode(token, published, algorithms=["ES256"]).claims == {"sub": "a"}
    fresh = state.signer.sign({"sub": "b"}, "JWT")
    decoded = jwt.decode(fresh, published, algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "kid": state.signer.kid, "typ": "JWT"}


def test_generated_key_carries_its_schedule() -> None:
    (key,) = generate_jwks("EdDSA", now=T + 0.7)["keys"]
    assert key["publish_at"] == key["sign_at"] == T and "retire_at" not in key
    assert "active" not in key
    (since_forever,) = generate_jwks()["keys"]
    assert since_forever["publish_at"] == since_forever["sign_at"] == 0


def _legacy(*active: bool) -> dict[str, object]:
    return {"keys": [{**generate_jwk("ES256"), "active": flag} for flag in active]}


def test_files_from_before_schedules_still_load() -> None:
    jwks = _legacy(False, True)
    keys = keyset_from_jwks(jwks)
    for t in (0, T, 4 * T):  # the active key signs and both are published, forever
        state = keys.at(t)
        assert state.signer.kid == jwks["keys"][1]["kid"]  # type: ignore[index]
        assert len(state.public_jwks["keys"]) == 2


def test_rotating_an_old_file_converts_it() -> None:
    jwks = _legacy(False, True)
    out = rotated(jwks, now=T, lead=60, token_ttl=600)
    assert all("active" not in k for k in out["keys"])
    first, second, new = out["keys"]
    assert "sign_at" not in first and second["sign_at"] == 0
    assert first["retire_at"] == second["retire_at"] == T + 60 + 600 + 60
    keys = keyset_from_jwks(out)
    assert keys.at(T + 59).signer.kid == second["kid"]
    assert keys.at(T + 60).signer.kid == new["kid"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j.update(keys=[]), "non-empty"),
        (lambda j: j["keys"].append("junk"), "JSON object"),
        (lambda j: j["keys"][0].pop("sign_at"), "no key can sign"),
        (lambda j: j["keys"][0].update(alg="HS256"), "alg must be one of"),
        (lambda j: j["keys"][0].pop("kid"), "unique string 'kid'"),
        (lambda j: j["keys"][0].pop("d"), "private key is required"),
        (lambda j: j["keys"][0].update(x="bad"), "key"),
        (lambda j: j["keys"][0].update(active=True), "cannot be combined"),
        (lambda j: j["keys"][0].update(sign_at="soon"), "epoch seconds"),
        (lambda j: j["keys"][0].update(sign_at=True), "epoch seconds"),
        (lambda j: j["keys"][0].update(publish_at=-5), "epoch seconds"),
        (lambda j: j["keys"][0].update(sign_at=T - 1), "not be before publish_at"),
        (lambda j: j["keys"][0].update(retire_at=T + 10), "signs last"),
        (lambda j: j["keys"][0].update(retire_at=T), "retire_at must be after"),
    ],
)
def test_bad_key_files_are_refused(mutate, message: str) -> None:
    jwks = copy.deepcopy(generate_jwks("ES256", now=T))
    mutate(jwks)
    with pytest.raises(ValueError, match=message):
        keyset_from_jwks(jwks)


@pytest.mark.parametrize(("flags", "found"), [((False,), 0), ((True, True), 2)])
def test_old_files_need_exactly_one_active_key(flags: tuple[bool, ...], found: int) -> None:
    with pytest.raises(ValueError, match=f"exactly one key must be marked active, found {found}"):
        keyset_from_jwks(_legacy(*flags))


def test_at_hash_is_left_half_of_the_alg_hash() -> None:
    import base64
    import hashlib

    signer = keyset_from_jwks(generate_jwks("ES256")).signer
    digest = hashlib.sha256(b"token").digest()[:16]
    assert signer.half_hash("token") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    ed = keyset_from_jwks(generate_jwks("EdDSA")).signer
    digest = hashlib.sha512(b"token").digest()[:32]
    assert ed.half_hash("token") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
