"""Compact JWS signing (RFC 7515 §7.1) straight on `cryptography` keys.

The protected header of each (key, typ) pair is encoded once, so signing a token costs one
JSON dump of the claims, one base64 pass and the signature itself. Verification stays with
joserfc (see `signing.keys.KeySet.verify_keys`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGORITHMS = ("ES256", "EdDSA", "RS256", "PS256")
TYPES = ("at+jwt", "JWT")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _es256(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    algorithm = ec.ECDSA(hashes.SHA256())

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, algorithm))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def _rsa(key: rsa.RSAPrivateKey, pad: padding.AsymmetricPadding) -> Callable[[bytes], bytes]:
    sha256 = hashes.SHA256()
    return lambda data: key.sign(data, pad, sha256)


def _sign_function(alg: str, key: Any) -> Callable[[bytes], bytes]:
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        return _es256(key)
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return _rsa(key, padding.PKCS1v15())
    if alg == "PS256" and isinstance(key, rsa.RSAPrivateKey):
        return _rsa(key, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH))
    raise ValueError(f"alg {alg} does not match a {type(key).__name__}")


class Signer:
    """Signs JWTs with one key; also computes OIDC's left-half hashes (`at_hash`)."""

    __slots__ = ("_half_hash", "_heads", "_sign", "alg", "kid")

    def __init__(self, alg: str, kid: str, sign: Callable[[bytes], bytes]) -> None:
        self.alg = alg
        self.kid = kid
        self._sign = sign
        self._heads = {
            typ: _b64(orjson.dumps({"alg": alg, "kid": kid, "typ": typ})) + b"." for typ in TYPES
        }
        # OIDC Core §3.1.3.6: hash with the alg's hash; Ed25519 uses SHA-512 (as certified OPs do)
        self._half_hash = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        signing_input = self._heads[typ] + _b64(orjson.dumps(claims))
        return (signing_input + b"." + _b64(self._sign(signing_input))).decode("ascii")

    def half_hash(self, value: str) -> str:
        digest = self._half_hash(value.encode("ascii")).digest()
        return _b64(digest[: len(digest) // 2]).decode("ascii")


def signer_for(alg: str, kid: str, private_key: Any) -> Signer:
    return Signer(alg, kid, _sign_function(alg, private_key))
