"""Signing keys: the private JWKS file, its active key, and the public JWKS (RFC 7517).

joserfc generates, imports and exports keys; signing itself happens in `signing.jws` on the
underlying `cryptography` key, because the generic JOSE path costs several times the signature
on the `/token` hot path.

File format: a JWKS whose keys carry `kid`, `alg`, `use: "sig"` and a non-standard member
`"active": true` on exactly the one key that signs (RFC 7517 §4 lets members be added; other
readers ignore it). All keys in the file are published so tokens signed by an older key keep
verifying after a rotation.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from tokensvc.config import ConfigError
from tokensvc.signing.jws import ALGORITHMS, Signer, signer_for

DEFAULT_ALG = "ES256"
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e")


@dataclass(frozen=True, slots=True)
class KeySet:
    signer: Signer
    public_jwks: dict[str, Any]
    verify_keys: dict[str, Any]  # kid -> joserfc key, for verification (introspection, tests)

    @property
    def kid(self) -> str:
        return self.signer.kid


def generate_jwk(alg: str = DEFAULT_ALG) -> dict[str, Any]:
    """A new private JWK for `alg`, its `kid` the RFC 7638 thumbprint."""
    if alg == "ES256":
        key: Any = ECKey.generate_key("P-256", private=True)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", private=True)
    elif alg in ("RS256", "PS256"):
        key = RSAKey.generate_key(2048, private=True)
    else:
        raise ValueError(f"unsupported alg {alg!r}; choose one of {', '.join(ALGORITHMS)}")
    jwk = dict(key.as_dict(private=True))
    jwk.update(kid=key.thumbprint(), alg=alg, use="sig")
    return jwk


def generate_jwks(alg: str = DEFAULT_ALG) -> dict[str, Any]:
    return {"keys": [{**generate_jwk(alg), "active": True}]}


def rotated(jwks: dict[str, Any], alg: str | None = None) -> dict[str, Any]:
    """A copy of `jwks` with a new active key (same alg as the current one unless given)."""
    keys = [dict(k) for k in jwks.get("keys", [])]
    current = next((k for k in keys if k.get("active")), keys[-1] if keys else None)
    new = generate_jwk(alg or (current or {}).get("alg", DEFAULT_ALG))
    for k in keys:
        k["active"] = False
    return {"keys": [*keys, {**new, "active": True}]}


def keyset_from_jwks(jwks: dict[str, Any]) -> KeySet:
    """Validate a private JWKS and prepare signing and publication. Raises `ValueError`."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("a JWKS with a non-empty 'keys' list is required")
    if not all(isinstance(k, dict) for k in entries):
        raise ValueError("every entry of 'keys' must be a JSON object")
    active = [k for k in entries if k.get("active") is True]
    if len(active) != 1:
        raise ValueError(f"exactly one key must be marked active, found {len(active)}")
    published: list[dict[str, Any]] = []
    verify: dict[str, Any] = {}
    signer: Signer | None = None
    for entry in entries:
        kid, alg = entry.get("kid"), entry.get("alg")
        if not isinstance(kid, str) or not kid or kid in verify:
            raise ValueError("every key needs a unique string 'kid'")
        if alg not in ALGORITHMS:
            raise ValueError(f"key {kid}: alg must be one of {', '.join(ALGORITHMS)}")
        try:
            key = JWKRegistry.import_key({m: v for m, v in entry.items() if m != "active"})
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"key {kid}: {exc}") from None
        if not key.is_private:
            raise ValueError(f"key {kid}: a private key is required")
        public = key.as_dict(private=False)
        published.append(
            {m: public[m] for m in _PUBLIC_MEMBERS if m in public} | {
                "kid": kid, "alg": alg, "use": "sig"}
        )
        verify[kid] = key
        if entry is active[0]:
            signer = signer_for(alg, kid, key.private_key)
    assert signer is not None
    return KeySet(signer=signer, public_jwks={"keys": published}, verify_keys=verify)


def load_keys_file(path: str | os.PathLike[str]) -> KeySet:
    """Load `TOKENSVC_KEYS_FILE`; a bad file is a configuration error (one line, exit 2)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"TOKENSVC_KEYS_FILE {path}: {exc.strerror}") from None
    try:
        return keyset_from_jwks(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"TOKENSVC_KEYS_FILE {path}: {exc}") from None


def write_private_jwks(path: str | os.PathLike[str], jwks: dict[str, Any]) -> None:
    """Write atomically with mode 0600: a reader sees the old file or the new one, never half."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(jwks, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
