"""`tokensvc.jwsverify` and `tokensvc.publickeys`: JWS signed by another implementation
(joserfc) verify here with every accepted algorithm, and everything RFC 7515 / RFC 7518 lets
a strict verifier refuse is refused."""

from __future__ import annotations

import base64
import warnings
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokensvc import jwsverify
from tokensvc.publickeys import ASSERTION_ALGS, BadKeys, check_public_jwks, public_keys

CLAIMS = {"iss": "c", "sub": "c", "jti": "j"}


def _key(alg: str, kid: str | None = "k1") -> Any:
    extra = {} if kid is None else {"kid": kid}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=extra)
    if alg == "ES384":
        return ECKey.generate_key("P-384", parameters=extra)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=extra)
    return RSAKey.generate_key(2048, parameters=extra)


def _sign(key: Any, alg: str, header: dict[str, Any] | None = None, payload: Any = None) -> str:
    head = {"alg": alg, **({"kid": key.kid} if key.kid else {}), **(header or {})}
    body = orjson.dumps(CLAIMS if payload is None else payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc on "EdDSA"
        return jws.serialize_compact(head, body, key, algorithms=[alg])


def _jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def _check(token: str, *keys: Any) -> dict[str, Any]:
    return jwsverify.verified_claims(
        jwsverify.parse(token, ASSERTION_ALGS), public_keys(_jwks(*keys))
    )


@pytest.mark.parametrize("alg", ASSERTION_ALGS)
def test_each_algorithm_verifies_a_token_signed_elsewhere(alg: str) -> None:
    key = _key(alg)
    assert _check(_sign(key, alg), key) == CLAIMS


@pytest.mark.parametrize("alg", ASSERTION_ALGS)
def test_a_tampered_token_is_refused(alg: str) -> None:
    key = _key(alg)
    head, _body, sig = _sign(key, alg).split(".")
    other = base64.urlsafe_b64encode(orjson.dumps({**CLAIMS, "sub": "x"})).rstrip(b"=").decode()
    with pytest.raises(jwsverify.BadJws):
        _check(f"{head}.{other}.{sig}", key)


def test_the_kid_picks_the_key_and_no_kid_tries_each_fitting_key() -> None:
    first, second = _key("ES256", "a"), _key("ES256", "b")
    assert _check(_sign(second, "ES256"), first, second) == CLAIMS
    unnamed = _key("ES256", None)
    assert _check(_sign(unnamed, "ES256"), first, unnamed) == CLAIMS
    with pytest.raises(jwsverify.BadJws):  # a kid the set lacks
        _check(_sign(_key("ES256", "c"), "ES256"), first, second)
    with pytest.raises(jwsverify.BadJws):  # signed by b, but named a
        _check(_sign(second, "ES256", {"kid": "a"}), first, second)


def test_a_key_checks_only_the_algorithms_it_allows() -> None:
    rsa_key = _key("RS256")
    jwk = {**rsa_key.as_dict(private=False), "alg": "PS256"}
    with pytest.raises(jwsverify.BadJws):  # RS256 by a key registered for PS256 only
        jwsverify.verified_claims(
            jwsverify.parse(_sign(rsa_key, "RS256"), ASSERTION_ALGS), public_keys({"keys": [jwk]})
        )
    p256 = _key("ES256")
    forged = _sign(p256, "ES256").replace(
        _sign(p256, "ES256").split(".")[0], _segment({"alg": "ES384", "kid": "k1"})
    )
    with pytest.raises(jwsverify.BadJws):  # ES384 claimed, P-256 key
        _check(forged, p256)


def _segment(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "HS256"},
        {"alg": "ES256", "crit": ["exp"], "exp": 1},
        {"alg": "ES256", "b64": False, "crit": ["b64"]},
    ],
)
def test_unsigned_symmetric_and_critical_headers_are_refused(header: dict[str, Any]) -> None:
    token = f"{_segment(header)}.{_segment(CLAIMS)}.c2ln"
    with pytest.raises(jwsverify.BadJws):
        jwsverify.parse(token, ASSERTION_ALGS)


def test_only_canonical_base64url_is_read() -> None:
    key = _key("ES256")
    head, body, sig = _sign(key, "ES256").split(".")
    assert _check(f"{head}.{body}.{sig}", key) == CLAIMS
    std = base64.b64encode(orjson.dumps(CLAIMS)).decode()  # may hold + and / and =
    for bad in (f"{head}.{body}=.{sig}", f"{head}.{body}.{sig}=", f"{head} .{body}.{sig}"):
        with pytest.raises(jwsverify.BadJws):
            _check(bad, key)
    with pytest.raises(jwsverify.BadJws):
        _check(f"{head}.{std}.{sig}", key)
    # a last character whose unused low bits are not zero decodes to the same bytes
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    idx = last.index(sig[-1])
    loose = sig[:-1] + last[idx | 1] if idx | 1 != idx else sig[:-1] + last[idx & ~1]
    with pytest.raises(jwsverify.BadJws):
        _check(f"{head}.{body}.{loose}", key)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "x" * 20000, "e30.e30.", "W10.e30.e30"])
def test_malformed_compact_serializations_are_refused(token: str) -> None:
    with pytest.raises(jwsverify.BadJws):
        jwsverify.parse(token, ASSERTION_ALGS)


def test_a_signature_of_the_wrong_length_is_refused() -> None:
    for alg, trim in (("ES256", 1), ("RS256", 1)):
        key = _key(alg)
        head, body, sig = _sign(key, alg).split(".")
        raw = base64.urlsafe_b64decode(sig + "==")
        short = base64.urlsafe_b64encode(raw[trim:]).rstrip(b"=").decode()
        with pytest.raises(jwsverify.BadJws):
            _check(f"{head}.{body}.{short}", key)


def test_a_payload_that_is_no_json_object_is_refused() -> None:
    key = _key("ES256")
    with pytest.raises(jwsverify.BadJws):
        _check(_sign(key, "ES256", payload=[1, 2]), key)


def _rsa_jwk(bits: int) -> dict[str, Any]:
    numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()

    return {"kty": "RSA", "n": b64(numbers.n).rstrip("="), "e": b64(numbers.e).rstrip("=")}


@pytest.mark.parametrize(
    ("jwk", "why"),
    [
        (_rsa_jwk(1024), "2048"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "octets"),
        ({"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43}, "not on"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, "32 octets"),
        ({"kty": "OKP", "crv": "Ed25519"}, "'x'"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "kty"),
        ({**_rsa_jwk(2048), "use": "enc"}, "use"),
        ({**_rsa_jwk(2048), "key_ops": ["encrypt"]}, "key_ops"),
        ({**_rsa_jwk(2048), "alg": "ES256"}, "does not fit"),
        ({**_rsa_jwk(2048), "n": "not base64!"}, "base64url"),
    ],
)
def test_keys_that_cannot_be_registered(jwk: dict[str, Any], why: str) -> None:
    with pytest.raises(BadKeys, match=why):
        check_public_jwks({"keys": [jwk]})
