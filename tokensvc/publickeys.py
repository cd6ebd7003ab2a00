"""Public keys that clients and federation issuers register (RFC 7517 JWK Sets), checked once
where they enter (registration, a fetched `jwks_uri`) and turned into `cryptography` keys
once per set, so that verifying a JWS with them (`tokensvc.jwsverify`) costs the signature
check and little else.

Only asymmetric keys are accepted, public members only: an HMAC key (`kty: oct`) would be a
shared secret stored in the clear, and a JWK with private members is a key the server must
never hold for someone else (RFC 7517 §4, RFC 7518 §6). RSA moduli are at least 2048 bits
(RFC 7518 §3.3); EC points must lie on their curve (checked by `cryptography`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# What client assertions and workload tokens may be signed with (RFC 7518 §3; RFC 8037).
ASSERTION_ALGS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVES = {"EC": frozenset({"P-256", "P-384"}), "OKP": frozenset({"Ed25519"})}
_EC: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    "P-256": (ec.SECP256R1, 32, "ES256"),
    "P-384": (ec.SECP384R1, 48, "ES384"),
}
MAX_KEYS = 20
MIN_RSA_BITS = 2048

PublicKeyObject = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class BadKeys(ValueError):
    """A JWK Set that cannot be registered or used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One verification key of a set: its `kid` (None when it has none), the algorithms it
    may check (`alg` when the JWK names one, else every one its type allows) and the key."""

    kid: str | None
    algs: frozenset[str]
    key: PublicKeyObject


def b64url_strict(text: str) -> bytes:
    """RFC 7515 §2 base64url without padding, in its one canonical spelling (no padding, no
    characters outside the alphabet, zero trailing bits); ValueError otherwise."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != text.encode("ascii", "replace"):
        raise ValueError("not canonical base64url")
    return data


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise BadKeys(f"a {jwk.get('kty')} key needs its {name!r} member")
    try:
        return b64url_strict(value)
    except (ValueError, binascii.Error):
        raise BadKeys(f"the {name!r} member of a key is not base64url") from None


def _import(jwk: dict[str, Any]) -> tuple[PublicKeyObject, frozenset[str]]:
    kty = jwk["kty"]
    if kty == "EC":
        curve, size, alg = _EC[jwk["crv"]]
        x, y = _member(jwk, "x"), _member(jwk, "y")
        if len(x) != size or len(y) != size:
            raise BadKeys(f"the coordinates of a {jwk['crv']} key are {size} octets each")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()
        )
        try:
            return numbers.public_key(), frozenset({alg})
        except ValueError:
            raise BadKeys(f"an EC key's point is not on {jwk['crv']}") from None
    if kty == "RSA":
        n = int.from_bytes(_member(jwk, "n"), "big")
        e = int.from_bytes(_member(jwk, "e"), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise BadKeys(f"an RSA key must have at least {MIN_RSA_BITS} bits")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key(), frozenset({"RS256", "PS256"})
        except ValueError:
            raise BadKeys("an RSA key's modulus or exponent is not usable") from None
    x = _member(jwk, "x")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(x), frozenset({"EdDSA"})
    except ValueError:
        raise BadKeys("an Ed25519 key's x is not 32 octets") from None


def check_public_jwks(jwks: object) -> dict[str, Any]:
    """`jwks` if it is a JWK Set of 1..20 public asymmetric keys that import, each `kid`
    unique; else `BadKeys`."""
    public_keys(jwks)
    assert isinstance(jwks, dict)
    return jwks


def public_key(jwk: object) -> PublicKey:
    """One public JWK as a verification key (a set's member, or a DPoP proof's `jwk` header,
    RFC 9449 §4.2); `BadKeys` for anything the module docstring refuses."""
    if not isinstance(jwk, dict):
        raise BadKeys("every key of a JWK Set is a JSON object")
    kty = jwk.get("kty")
    if kty not in ("EC", "RSA", "OKP"):
        raise BadKeys(f"only EC, RSA and OKP keys are accepted, not kty {kty!r}")
    if _PRIVATE & jwk.keys():
        raise BadKeys("the JWK Set holds private key material: register public keys only")
    if kty in _CURVES and jwk.get("crv") not in _CURVES[kty]:
        raise BadKeys(f"unsupported curve {jwk.get('crv')!r} for kty {kty}")
    alg = jwk.get("alg")
    if alg is not None and alg not in ASSERTION_ALGS:
        raise BadKeys(f"unsupported alg {alg!r}; choose from {', '.join(ASSERTION_ALGS)}")
    if jwk.get("use", "sig") != "sig":
        raise BadKeys('a key\'s "use" must be "sig"')
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise BadKeys('a key\'s "key_ops" must include "verify"')
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise BadKeys("every kid must be a string, unique within the set")
    key, algs = _import(jwk)
    if alg is not None:
        if alg not in algs:
            raise BadKeys(f"alg {alg!r} does not fit a {kty} key")
        algs = frozenset({alg})
    return PublicKey(kid, algs, key)


def public_keys(jwks: object) -> tuple[PublicKey, ...]:
    """The verification keys of a JWK Set (see the module docstring); `BadKeys` if it is not
    one that may be registered."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise BadKeys('a JWK Set is a JSON object with a "keys" array')
    keys = jwks["keys"]
    if not 1 <= len(keys) <= MAX_KEYS:
        raise BadKeys(f"a JWK Set must hold 1 to {MAX_KEYS} keys")
    kids: set[str] = set()
    imported: list[PublicKey] = []
    for jwk in keys:
        key = public_key(jwk)
        if key.kid is not None:
            if key.kid in kids:
                raise BadKeys("every kid must be a string, unique within the set")
            kids.add(key.kid)
        imported.append(key)
    return tuple(imported)
