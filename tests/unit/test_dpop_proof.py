"""`tokensvc.dpopproof`: every check of RFC 9449 §4.3 that needs no store, on proofs made by
joserfc (an implementation independent of the service's), and the stateless nonces."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from tests.jose import dpop_proof, jwk_thumbprint, keypair
from tokensvc import dpopproof
from tokensvc.dpopproof import BadProof, Nonces, normalized_url

URL = "https://auth.example.com/token"


def check(proof: str, **kwargs: Any) -> dpopproof.Proof:
    kwargs.setdefault("method", "POST")
    kwargs.setdefault("url", URL)
    kwargs.setdefault("now", time.time())
    return dpopproof.check(proof, **kwargs)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_a_proof_of_each_algorithm_gives_its_keys_thumbprint(alg: str) -> None:
    key = keypair(alg)
    proof = check(dpop_proof(key, URL, alg=alg))
    assert proof.jkt == jwk_thumbprint(key) and proof.jti and proof.nonce is None


@pytest.mark.parametrize(
    "htu",
    [
        "https://auth.example.com/token?x=1",
        "https://auth.example.com/token#f",
        "HTTPS://AUTH.EXAMPLE.COM/token",
        "https://auth.example.com:443/token",
    ],
)
def test_htu_is_compared_without_query_fragment_case_and_default_port(htu: str) -> None:
    assert check(dpop_proof(keypair(), htu)).jkt


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"htm": "GET"}, "htm"),
        ({"htu": "https://auth.example.com/other"}, "htu"),
        ({"htu": "http://auth.example.com/token"}, "htu"),
        ({"htu": "https://auth.example.com:8443/token"}, "htu"),
        ({"htu": None}, "htu"),
        ({"iat_offset": -120}, "iat"),  # seconds from when the test runs, not collection
        ({"iat_offset": 120}, "iat"),
        ({"iat": "now"}, "iat"),
        ({"iat": None}, "iat"),
        ({"jti": None}, "jti"),
        ({"jti": ""}, "jti"),
        ({"jti": "x" * 300}, "jti"),
    ],
)
def test_each_claim_is_checked(changes: dict[str, Any], why: str) -> None:
    changes = dict(changes)
    htu, htm = changes.pop("htu", URL), changes.pop("htm", "POST")
    if "iat_offset" in changes:
        changes["iat"] = int(time.time()) + changes.pop("iat_offset")
    with pytest.raises(BadProof, match=why):
        check(dpop_proof(keypair(), htu, htm, **changes))


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ({"typ": "JWT"}, "typ"),
        ({"typ": None}, "typ"),
        ({"jwk": None}, "jwk"),
        ({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}, "jwk"),
    ],
)
def test_the_header_is_checked(header: dict[str, Any], why: str) -> None:
    with pytest.raises(BadProof, match=why):
        check(dpop_proof(keypair(), URL, header=header))


def test_a_jwk_that_is_no_object_is_refused() -> None:
    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": "not an object"}  # joserfc won't sign it
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "j"}
    with pytest.raises(BadProof, match="jwk"):
        check(f"{_segment(head)}.{_segment(claims)}.c2ln")


def _segment(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def test_a_header_is_checked_once_but_every_proof_is_verified() -> None:
    key = keypair()
    first = dpop_proof(key, URL)
    assert check(first).jkt == jwk_thumbprint(key)
    head, _body, sig = dpop_proof(key, URL).split(".")
    assert head == first.split(".")[0]  # the same header: from memory this time
    other = dpop_proof(key, URL, jti="another").split(".")[1]
    with pytest.raises(BadProof, match="signature"):
        check(f"{head}.{other}.{sig}")  # the signature is still checked, every time


def test_a_jwk_with_private_members_is_refused() -> None:
    key = keypair()
    with pytest.raises(BadProof, match="jwk"):
        check(dpop_proof(key, URL, header={"jwk": key.as_dict(private=True)}))


def test_a_proof_signed_by_another_key_than_its_jwk_is_refused() -> None:
    signer, other = keypair(), keypair()
    forged = dpop_proof(signer, URL, header={"jwk": other.as_dict(private=False)})
    with pytest.raises(BadProof, match="signature"):
        check(forged)


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_and_symmetric_proofs_are_refused(alg: str) -> None:
    key = keypair()
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "j"}
    with pytest.raises(BadProof, match="signed with one of"):
        check(f"{_segment(head)}.{_segment(claims)}.c2ln")


@pytest.mark.parametrize("token", ["", "a.b", "x" * 9000, "not.a.jwt"])
def test_garbage_is_a_bad_proof(token: str) -> None:
    with pytest.raises(BadProof):
        check(token)


def test_ath_binds_the_proof_to_the_access_token() -> None:
    key = keypair()
    ath = dpopproof.token_hash("the-token")
    assert check(dpop_proof(key, URL, ath=ath), access_token="the-token").jkt
    with pytest.raises(BadProof, match="ath"):
        check(dpop_proof(key, URL, ath=ath), access_token="another-token")
    with pytest.raises(BadProof, match="ath"):
        check(dpop_proof(key, URL), access_token="the-token")


def test_normalized_url_keeps_the_path_and_a_non_default_port() -> None:
    assert normalized_url("http://127.0.0.1:8080/token?q#f") == "http://127.0.0.1:8080/token"
    assert normalized_url("https://[::1]:443/t") == "https://[::1]/t"


def test_nonces_are_accepted_by_every_replica_sharing_the_secret_for_two_windows() -> None:
    one, two, other = Nonces(b"shared"), Nonces(b"shared"), Nonces(b"another")
    now = 1_000_000.0
    nonce = one.current(now)
    assert two.valid(nonce, now) and two.valid(nonce, now + dpopproof.NONCE_WINDOW)
    assert not two.valid(nonce, now + 2 * dpopproof.NONCE_WINDOW + 1)
    assert not other.valid(nonce, now)
    assert not one.valid(None, now) and not one.valid("x", now)
    assert check(dpop_proof(keypair(), URL, nonce=nonce)).nonce == nonce
