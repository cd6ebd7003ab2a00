"""Compact JWS signing (RFC 7515 §7.1) straight on `cryptography` keys.

The protected header of each (key, typ) pair is encoded once, so signing a token costs one
JSON dump of the claims, one base64 pass and the signature itself. Verification stays with
joserfc (see `signing.keys.KeySet.verify_keys`), plus `signing.verify`'s check that a signature
is in the one form signed here, so that each token has exactly one string:

* ECDSA (ES256): (r, s) and (r, n - s) both verify (SEC 1 v2 §4.1.4), and OpenSSL returns
  either, about half the time each. We sign low-S only (s <= n/2, Bitcoin's BIP 146 rule) and
  refuse high-S, so nobody can turn one token into a second valid string.
* RSA (RS256, PS256): the signature must be exactly k octets, the modulus length (RFC 8017
  §8.1.2 and §8.2.2, step 1); OpenSSL enforces it for PKCS #1 v1.5 but, for PSS, accepts one
  whose leading zero octets were dropped. Otherwise unique: PKCS #1 v1.5 is deterministic, and
  PSS signatures, though randomised, can be made only with the private key.
* EdDSA (Ed25519): deterministic, and OpenSSL refuses S >= L (RFC 8032 §5.1.7) and compares
  R octet for octet with the one it recomputes, so one signature per message and key.

joserfc decodes every segment strictly (no padding, no stray characters, zero trailing bits),
so the base64url text is unique as well.
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
# Access tokens (RFC 9068), ID tokens, transaction tokens (draft-ietf-oauth-transaction-tokens).
TYPES = ("at+jwt", "JWT", "txntoken+jwt", "logout+jwt")

# The order n of P-256's base point (SEC 2 v2 §2.4.2).
P256_ORDER = 0xFFFFFFFF_00000000_FFFFFFFF_FFFFFFFF_BCE6FAAD_A7179E84_F3B9CAC2_FC632551


class Ecdsa:
    """An ECDSA alg of ours: its curve and hash, the curve's order and the octets of r and of s
    in the JWS signature r || s (RFC 7518 §3.4)."""

    __slots__ = ("curve", "digest", "half", "order", "size")

    def __init__(
        self, curve: type[ec.EllipticCurve], digest: hashes.HashAlgorithm, order: int, size: int
    ) -> None:
        self.curve = curve
        self.digest = digest
        self.order = order
        self.half = order >> 1  # low-S: s <= half
        self.size = size

    def low_s(self, signature: bytes) -> bool:
        """Whether a JWS signature has the form we sign: 2 * size octets, s <= n/2."""
        return (
            len(signature) == 2 * self.size
            and int.from_bytes(signature[self.size :], "big") <= self.half
        )


# Every ECDSA alg in ALGORITHMS, and every RSA one (their signatures are k octets long).
ECDSA: dict[str, Ecdsa] = {"ES256": Ecdsa(ec.SECP256R1, hashes.SHA256(), P256_ORDER, 32)}
RSA = frozenset({"RS256", "PS256"})


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _ecdsa(key: ec.EllipticCurvePrivateKey, params: Ecdsa) -> Callable[[bytes], bytes]:
    algorithm = ec.ECDSA(params.digest)
    order, half, size = params.order, params.half, params.size

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, algorithm))
        if s > half:  # (r, n - s) is the same signature's low-S form
            s = order - s
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


def _rsa(key: rsa.RSAPrivateKey, pad: padding.AsymmetricPadding) -> Callable[[bytes], bytes]:
    sha256 = hashes.SHA256()
    return lambda data: key.sign(data, pad, sha256)


def _sign_function(alg: str, key: Any) -> Callable[[bytes], bytes]:
    params = ECDSA.get(alg)
    if (
        params is not None
        and isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, params.curve)
    ):
        return _ecdsa(key, params)
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
