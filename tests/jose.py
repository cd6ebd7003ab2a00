"""JOSE objects the tests make with joserfc, an implementation independent of the service's:
key pairs, JWK Sets, signed assertions and workload tokens (a Kubernetes service-account
token, a SPIFFE JWT-SVID)."""

from __future__ import annotations

import time
import uuid
import warnings
from typing import Any

from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

ISSUER = "http://127.0.0.1:8080"  # the test harness's issuer


def keypair(alg: str = "ES256", kid: str | None = None) -> Any:
    if alg == "ES256":
        key: Any = ECKey.generate_key("P-256", private=True)
    elif alg == "ES384":
        key = ECKey.generate_key("P-384", private=True)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", private=True)
    else:
        key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid() if kid is None else None
    if kid is not None:
        key = type(key).import_key({**key.as_dict(private=True), "kid": kid})
    return key


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(key: Any, alg: str = "ES256", **claims: Any) -> str:
    header = {"alg": alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    payload = {k: v for k, v in claims.items() if v is not None}
    with warnings.catch_warnings():  # joserfc warns on "EdDSA" and "none", which we send
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, payload, key, algorithms=[alg])


def workload_token(key: Any, issuer: str, sub: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": sub, "aud": [ISSUER], "exp": now + 3600, "iat": now}
    return assertion(key, **{**claims, **changes})


def dpop_proof(
    key: Any,
    htu: str,
    htm: str = "POST",
    *,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A DPoP proof (RFC 9449 §4.2) signed by `key`, its public JWK in the header; `claims`
    override or add to htm, htu, iat and a fresh jti (None removes one)."""
    body = {"htm": htm, "htu": htu, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    body.update(claims)
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False), **(header or {})}
    with warnings.catch_warnings():  # joserfc warns on "EdDSA" and "none"
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(
            {k: v for k, v in head.items() if v is not None},
            {k: v for k, v in body.items() if v is not None},
            key,
            algorithms=[alg],
        )


def jwk_thumbprint(key: Any) -> str:
    """RFC 7638, as joserfc computes it (independently of the service)."""
    return str(key.thumbprint())
