"""The key-file tooling behind `tokensvc keys generate|rotate`: new keys, rotation schedules
written into the private JWKS, and atomic writes of the file (RFC 7517, RFC 7638 `kid`s).

The running service never imports this: it reads the file through `signing.keys`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokensvc.config import DEFAULT_ACCESS_TOKEN_TTL
from tokensvc.signing.jws import ALGORITHMS
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.schedule import JWKS_MAX_AGE, SINCE_FOREVER, Rotation, Window, rotate

DEFAULT_ALG = "ES256"


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


def generate_jwks(alg: str = DEFAULT_ALG, *, now: float = SINCE_FOREVER) -> dict[str, Any]:
    """A private JWKS of one key, published and signing from `now` (`keys generate` passes
    the current time; the default is since forever)."""
    since = float(math.floor(now))
    return {"keys": [{**generate_jwk(alg), **Window("", since, since).members()}]}


def rotate_jwks(
    jwks: dict[str, Any],
    alg: str | None = None,
    *,
    now: float,
    lead: int = JWKS_MAX_AGE,
    token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL,
    retire_after: int | None = None,
) -> tuple[dict[str, Any], Rotation]:
    """`jwks` (validated first) with a new key scheduled by `schedule.rotate`; the new key has
    the alg of the key signing at `now` unless `alg` is given. Raises `ValueError`."""
    current = keyset_from_jwks(jwks)
    new = generate_jwk(alg or current.at(now).signer.alg)
    rotation = rotate(
        [k.window for k in current.keys],
        new["kid"],
        now=now,
        lead=lead,
        token_ttl=token_ttl,
        retire_after=retire_after,
    )
    jwk_of = {k.window.kid: k.jwk for k in current.keys} | {new["kid"]: new}
    out = {"keys": [{**jwk_of[w.kid], **w.members()} for w in rotation.windows]}
    keyset_from_jwks(out)
    return out, rotation


def rotated(jwks: dict[str, Any], alg: str | None = None, **schedule: Any) -> dict[str, Any]:
    """`rotate_jwks` without the report; `now` defaults to the wall clock."""
    schedule.setdefault("now", time.time())
    return rotate_jwks(jwks, alg, **schedule)[0]


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
