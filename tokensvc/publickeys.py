"""Public keys that clients and federation issuers register (RFC 7517 JWK Sets), checked once
where they enter (registration, a fetched `jwks_uri`) so the verifiers can trust their shape.

Only asymmetric keys are accepted, public members only: an HMAC key (`kty: oct`) would be a
shared secret stored in the clear, and a JWK with private members is a key the server must
never hold for someone else (RFC 7517 §4, RFC 7518 §6).
"""

from __future__ import annotations

from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

# What client assertions and workload tokens may be signed with (RFC 7518 §3; RFC 8037).
ASSERTION_ALGS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVES = {"EC": frozenset({"P-256", "P-384"}), "OKP": frozenset({"Ed25519"})}
MAX_KEYS = 20


class BadKeys(ValueError):
    """A JWK Set that cannot be registered or used; the message says why in one line."""


def check_public_jwks(jwks: object) -> dict[str, Any]:
    """`jwks` if it is a JWK Set of 1..20 public asymmetric keys joserfc can import, each
    `kid` unique; else `BadKeys`."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise BadKeys('a JWK Set is a JSON object with a "keys" array')
    keys = jwks["keys"]
    if not 1 <= len(keys) <= MAX_KEYS:
        raise BadKeys(f"a JWK Set must hold 1 to {MAX_KEYS} keys")
    kids: set[str] = set()
    for key in keys:
        if not isinstance(key, dict):
            raise BadKeys("every key of a JWK Set is a JSON object")
        kty = key.get("kty")
        if kty not in ("EC", "RSA", "OKP"):
            raise BadKeys(f"only EC, RSA and OKP keys are accepted, not kty {kty!r}")
        if _PRIVATE & key.keys():
            raise BadKeys("the JWK Set holds private key material: register public keys only")
        if kty in _CURVES and key.get("crv") not in _CURVES[kty]:
            raise BadKeys(f"unsupported curve {key.get('crv')!r} for kty {kty}")
        alg = key.get("alg")
        if alg is not None and alg not in ASSERTION_ALGS:
            raise BadKeys(f"unsupported alg {alg!r}; choose from {', '.join(ASSERTION_ALGS)}")
        kid = key.get("kid")
        if kid is not None:
            if not isinstance(kid, str) or kid in kids:
                raise BadKeys("every kid must be a string, unique within the set")
            kids.add(kid)
    key_set(jwks)
    return jwks


def key_set(jwks: dict[str, Any]) -> KeySet:
    """The joserfc key set of a checked JWK Set; `BadKeys` if a key does not import."""
    try:
        return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise BadKeys(f"a key does not import: {exc}") from None
