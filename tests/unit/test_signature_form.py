"""One token, one string: our signer produces one form of each signature, and the verifier of
our tokens accepts no other (see `tokensvc.signing.jws`).

ECDSA: s and n - s both verify (SEC 1 v2 §4.1.4), so we sign low-S and refuse high-S. RSA: a
PSS signature with its leading zero octet dropped still verifies in OpenSSL, so a signature must
be k octets (RFC 8017 §8.1.2, §8.2.2). EdDSA: OpenSSL already refuses S + L (RFC 8032 §5.1.7).
"""

from __future__ import annotations

import base64
import time
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet as JoseKeySet

from tokensvc.signing.jws import P256_ORDER, signer_for
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import KeySet, keyset_from_jwks
from tokensvc.signing.verify import InvalidToken, verify_access_token

ISSUER = "https://issuer.example"
# SEC 2 v2 §2.4.2, written out here rather than taken from the code under test.
N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
# RFC 8032 §5.1: the order of Ed25519's base point.
L = 2**252 + 27742317777372353535851937790883648493


def b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64e(signature)


def access_token(keys: KeySet, now: int, n: int = 0) -> str:
    claims = {"iss": ISSUER, "sub": "u", "exp": now + 60, "jti": f"j{n}", "client_id": "c"}
    return keys.at(now).signer.sign(claims, "at+jwt")


def accepted(token: str, keys: KeySet, now: int) -> bool:
    try:
        verify_access_token(token, keys, ISSUER, now)
    except InvalidToken:
        return False
    return True


def plain_joserfc_accepts(token: str, keys: KeySet, now: int) -> bool:
    """What a relying party's library says (no uniqueness rule of ours)."""
    published = JoseKeySet.import_key_set(keys.at(now).public_jwks)
    algs = [k["alg"] for k in keys.at(now).public_jwks["keys"]]
    try:
        jwt.decode(token, published, algorithms=algs)
    except (JoseError, ValueError):
        return False
    return True


def test_order_constant() -> None:
    assert P256_ORDER == N


def test_es256_signs_low_s_only() -> None:
    """OpenSSL returns high-S about half the time: 200 signatures without one show the
    normalisation (a chance of 2^-200 without it)."""
    keys = keyset_from_jwks(generate_jwks("ES256"))
    now = int(time.time())
    for n in range(200):
        token = access_token(keys, now, n)
        signature = b64d(token.rsplit(".", 1)[1])
        assert len(signature) == 64
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        assert 0 < r < N and 0 < s <= N // 2, f"high-S in signature {n}"
        assert accepted(token, keys, now)


def test_es256_high_s_is_refused() -> None:
    keys = keyset_from_jwks(generate_jwks("ES256"))
    now = int(time.time())
    token = access_token(keys, now)
    signature = b64d(token.rsplit(".", 1)[1])
    s = int.from_bytes(signature[32:], "big")
    flipped = with_signature(token, signature[:32] + (N - s).to_bytes(32, "big"))
    assert flipped != token
    assert plain_joserfc_accepts(flipped, keys, now)  # the same signature, malleated
    assert accepted(token, keys, now)
    assert not accepted(flipped, keys, now)


def test_ecdsa_key_on_another_curve_is_not_an_es256_signer() -> None:
    with pytest.raises(ValueError):
        signer_for("ES256", "k", ec.generate_private_key(ec.SECP384R1()))


def _leading_zero_token(keys: KeySet, now: int) -> str:
    """A token whose RSA signature starts with a zero octet (one in 256)."""
    for n in range(20_000):
        token = access_token(keys, now, n)
        if b64d(token.rsplit(".", 1)[1])[0] == 0:
            return token
    raise AssertionError("no signature with a leading zero octet")


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_rsa_signature_must_be_k_octets(alg: str) -> None:
    keys = keyset_from_jwks(generate_jwks(alg))
    now = int(time.time())
    token = _leading_zero_token(keys, now)
    signature = b64d(token.rsplit(".", 1)[1])
    assert len(signature) == 256
    short = with_signature(token, signature[1:])
    assert accepted(token, keys, now)
    assert not accepted(short, keys, now)
    assert not accepted(with_signature(token, b"\0" + signature), keys, now)


def test_eddsa_signature_plus_l_is_refused() -> None:
    keys = keyset_from_jwks(generate_jwks("EdDSA"))
    now = int(time.time())
    token = access_token(keys, now)
    signature = b64d(token.rsplit(".", 1)[1])
    s = int.from_bytes(signature[32:], "little")
    assert s + L < 2**256
    malleated = with_signature(token, signature[:32] + (s + L).to_bytes(32, "little"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA as deprecated (RFC 9864)
        assert accepted(token, keys, now)
        assert not accepted(malleated, keys, now)
        assert not plain_joserfc_accepts(malleated, keys, now)


def test_id_tokens_are_low_s_too() -> None:
    """ID tokens go through the same signer (one `Signer.sign` for both types)."""
    keys = keyset_from_jwks(generate_jwks("ES256"))
    now = int(time.time())
    signer = keys.at(now).signer
    claims: dict[str, Any] = {"iss": ISSUER, "sub": "u", "aud": "c", "exp": now + 60}
    for n in range(64):
        signature = b64d(signer.sign({**claims, "iat": n}, "JWT").rsplit(".", 1)[1])
        assert int.from_bytes(signature[32:], "big") <= N // 2
