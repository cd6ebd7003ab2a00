"""Verifying a JWS in compact serialization (RFC 7515 §5.2, §7.1) with registered public keys
(`tokensvc.publickeys`), straight on `cryptography`: the client assertions and workload tokens
of `tokensvc.clientauth` are checked on every request that carries a fresh one, so beyond
the signature itself this costs three base64 passes and two small JSON parses.

The rules, strict where RFC 7515 lets a verifier choose:
* three segments, each canonical base64url (`publickeys.b64url_strict`); the header a JSON
  object whose `alg` is one the caller allows and no `crit` (§4.1.11: we understand no
  extension, so any is refused; that includes RFC 7797's unencoded payloads);
* the key: the one whose `kid` the header names, or, when it names none, each key of the set
  that may check `alg` in turn; a key checks only the algorithms its JWK allows
  (`alg`, else its type's: EC P-256 ES256, P-384 ES384, RSA RS256/PS256, Ed25519 EdDSA);
* ECDSA signatures are r || s of exactly twice the curve's size (RFC 7518 §3.4); RSA ones
  exactly the modulus length (RFC 8017 §8.1.2, §8.2.2).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokensvc.publickeys import PublicKey, PublicKeyObject, b64url_strict

MAX_LENGTH = 16 * 1024  # characters of a compact JWS we read at all


class BadJws(ValueError):
    """Not a JWS these keys verify; the message is safe to send."""


@dataclass(frozen=True, slots=True)
class Compact:
    """A parsed, not yet verified, compact JWS."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def parse(token: str, algs: frozenset[str] | tuple[str, ...]) -> Compact:
    """The segments of `token`, its header checked; `BadJws` for anything malformed."""
    if len(token) > MAX_LENGTH or token.count(".") != 2:
        raise BadJws("Malformed JWS.")
    head, body, sig = token.split(".")
    try:
        header = orjson.loads(b64url_strict(head))
        payload = b64url_strict(body)
        signature = b64url_strict(sig)
    except (ValueError, binascii.Error):  # orjson.JSONDecodeError is a ValueError
        raise BadJws("Malformed JWS.") from None
    if not isinstance(header, dict):
        raise BadJws("Malformed JWS.")
    if header.get("alg") not in algs:
        raise BadJws(f"The JWS must be signed with one of {', '.join(sorted(algs))}.")
    if "crit" in header:
        raise BadJws("The JWS names critical extensions; none is supported.")
    return Compact(header, f"{head}.{body}".encode("ascii"), payload, signature)


def verified_claims(compact: Compact, keys: tuple[PublicKey, ...]) -> dict[str, Any]:
    """The JSON object payload, once one of `keys` verifies the signature; else `BadJws`."""
    alg: str = compact.header["alg"]
    kid = compact.header.get("kid")
    for candidate in keys:
        if (kid is None or candidate.kid == kid) and alg in candidate.algs:
            if verifies(alg, candidate.key, compact.signing_input, compact.signature):
                break
            if kid is not None:
                raise BadJws("The signature does not verify.")
    else:
        raise BadJws("The signature does not verify.")
    try:
        claims = orjson.loads(compact.payload)
    except orjson.JSONDecodeError:
        raise BadJws("Malformed JWS payload.") from None
    if not isinstance(claims, dict):
        raise BadJws("The JWS payload is not a JSON object.")
    return claims


_SHA256 = hashes.SHA256()
_ECDSA = {"ES256": (ec.ECDSA(hashes.SHA256()), 32), "ES384": (ec.ECDSA(hashes.SHA384()), 48)}
_PSS = padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256.digest_size)


def verifies(alg: str, key: PublicKeyObject, data: bytes, signature: bytes) -> bool:
    """Whether `signature` over `data` verifies with `key` under `alg` (RFC 7518 §3)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm, size = _ECDSA[alg]
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), data, algorithm)
        elif isinstance(key, rsa.RSAPublicKey):
            if len(signature) != (key.key_size + 7) // 8:
                return False
            pad = _PSS if alg == "PS256" else padding.PKCS1v15()
            key.verify(signature, data, pad, _SHA256)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:  # pragma: no cover - publickeys imports no other kind
            return False
    except InvalidSignature:
        return False
    return True
