"""`cc_dpop` (README "DPoP"): `client_credentials` for the machine client, authenticated
exactly like the baseline (client_secret_basic, the same form body), plus a `DPoP` header
(RFC 9449 §4) whose proof is fresh for each request: ES256, a key pair generated here,
`htm` POST, `htu` the target's issuer + "/token" (what the service compares, never the URL the
kit reached: behind an ingress they differ), `iat` the time it is signed, a unique `jti`. The
service verifies the proof, spends its `jti` in its replay store and binds the token to the
key (`cnf.jkt`, `token_type` DPoP): the cost this workload measures against the baseline.

Proofs are signed before the timed window, like private_key_jwt assertions, and each is sent
once. The service accepts an `iat` within `IAT_WINDOW` seconds of its clock, so a line is
dropped unsent once it is older than that minus one phase, and a phase must fit well inside
the window (`max_phase`). The server-nonce mode (`TOKENSVC_DPOP_NONCE=1`) is not measured: a
proof made ahead cannot carry a nonce that changes every few minutes.

A line is `(basic, body, proof)` (benchmarks.prepare): both generators add the third field as
a `DPoP:` header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

from benchmarks.prepare import Client, Line, PrepareError, client_credentials_line
from benchmarks.resources import claims

IAT_WINDOW = 60  # s an iat may lie from the service's clock (tokensvc.dpopproof.IAT_WINDOW)
THUMBPRINT_MEMBERS = ("crv", "kty", "x", "y")  # RFC 7638 §3.2: an EC key's required members


def max_phase() -> int:
    """The longest `--duration + --warmup` a cc_dpop phase may have: with the kit's 5 s of
    slack, half the window, as private_key_jwt phases get half their assertions' lifetime; a
    proof may then wait in the pool as long again (the pool's `max_age`) and still be inside
    the window when the phase ends."""
    return IAT_WINDOW // 2 - 5


@dataclass
class DpopProver:
    """The kit's DPoP key and the proofs it signs for one endpoint (`htu`)."""

    htu: str
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))

    def public_jwk(self) -> dict[str, Any]:
        return {k: v for k, v in self.key.as_dict(private=False).items() if k != "kid"}

    def thumbprint(self) -> str:
        """RFC 7638: what the service puts in the token's `cnf.jkt`."""
        jwk = self.public_jwk()
        required = json.dumps({k: jwk[k] for k in THUMBPRINT_MEMBERS}, separators=(",", ":"))
        digest = hashlib.sha256(required.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def proofs(self, n: int) -> list[str]:
        """`n` proofs for POST `htu`, each with its own jti, all dated now."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()}
        base = {"htm": "POST", "htu": self.htu, "iat": int(time.time())}
        return [
            jwt.encode(header, {**base, "jti": secrets.token_urlsafe(16)}, self.key)
            for _ in range(n)
        ]


def dpop_lines(client: Client, prover: DpopProver, n: int, params: dict[str, str]) -> list[Line]:
    """`n` requests of cc_dpop: the baseline's line, each with a fresh proof."""
    basic, body = client_credentials_line(client, params)
    return [(basic, body, proof) for proof in prover.proofs(n)]


def check_dpop_bound(prover: DpopProver) -> Callable[[str, dict[str, Any]], None]:
    """The pre-run check of cc_dpop's one sample answer: a DPoP token bound to our key."""

    def check(workload: str, body: dict[str, Any]) -> None:
        if body.get("token_type") != "DPoP":
            raise PrepareError(
                f"{workload}: token_type is {body.get('token_type')!r}, not 'DPoP' (does the "
                "target support RFC 9449?)"
            )
        cnf = claims(body["access_token"]).get("cnf")
        if not isinstance(cnf, dict) or cnf.get("jkt") != prover.thumbprint():
            raise PrepareError(f"{workload}: the access token's cnf is {cnf!r}, not our key's")

    return check
