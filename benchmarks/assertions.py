"""Clients without shared secrets, for the client-authentication workloads (README "Workload
identity"): the kit plays a federation issuer and a `private_key_jwt` client, each with an
ES256 key pair generated here, and registers them against the target's database.

* `cc_federated_jwt`: the kit's federation issuer (`tokensvc federation add`) mints ONE
  workload token (like a Kubernetes projected service-account token: iss the issuer, sub
  `system:serviceaccount:bench:load`, aud the token service's issuer, valid for the whole run)
  and every request sends it again as `client_assertion`: the service verifies it once and
  remembers it until its `exp`, which is what this workload measures.
* `cc_private_key_jwt`: every request carries an assertion of its own (RFC 7523 §3: iss = sub =
  the client_id, aud the issuer's token endpoint, a unique `jti`, exp 600 s ahead, the most
  the service accepts), signed before the timed window like the codes of the
  authorization_code workload and spent once; a line older than `ASSERTION_LIFETIME` minus one
  phase is dropped unsent.

A request line is the kit's `(basic, body)` (benchmarks.prepare): no Basic credential, the
client_id and the assertion in the form body.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import ECKey

from benchmarks.prepare import Line, PrepareError, add_client, run_tokensvc, tokensvc_env

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATION_ISSUER = "https://bench-issuer.example"
WORKLOAD_SUBJECT = "system:serviceaccount:bench:load"
SUBJECT_PATTERN = "system:serviceaccount:bench:*"
ASSERTION_LIFETIME = 600  # s: the most ahead the service accepts a private_key_jwt exp
WORKLOAD_TOKEN_LIFETIME = 24 * 3600  # s: beyond any run (the service caches it until exp)


class Signer:
    """An ES256 key pair made here; its public half is what the target registers."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256"})
        self._header = {"alg": "ES256", "kid": kid, "typ": "JWT"}

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def write_public_jwks(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.public_jwks()))
        return path

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(self._header, claims, self._key)


def assertion_line(client_id: str, assertion: str, params: dict[str, str]) -> Line:
    """A client_credentials request authenticated by `assertion` (RFC 7523 §2.2)."""
    body = {
        "grant_type": "client_credentials",
        **params,
        "client_id": client_id,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    return "", urlencode(body)


@dataclass
class AssertionClients:
    """The two registered clients and what signs for them."""

    issuer: str  # the token service's issuer URL (TOKENSVC_ISSUER)
    federated_id: str
    workload_token: str
    private_key_jwt_id: str
    client_key: Signer

    def federated_line(self, params: dict[str, str]) -> Line:
        """The one request of cc_federated_jwt, sent again and again."""
        return assertion_line(self.federated_id, self.workload_token, params)

    def private_key_jwt_lines(self, n: int, params: dict[str, str]) -> list[Line]:
        """`n` requests of cc_private_key_jwt, each with a fresh assertion (unique jti)."""
        now = int(time.time())
        claims = {
            "iss": self.private_key_jwt_id,
            "sub": self.private_key_jwt_id,
            "aud": self.issuer + "/token",
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        sign, client_id = self.client_key.sign, self.private_key_jwt_id
        return [
            assertion_line(client_id, sign({**claims, "jti": secrets.token_urlsafe(16)}), params)
            for _ in range(n)
        ]


def register(database_url: str, issuer: str, workdir: Path) -> AssertionClients:
    """Trust the kit's federation issuer and register a federated_jwt and a private_key_jwt
    client for client_credentials (their public JWKS files go to `workdir`); mint the workload
    token. `issuer` is the token service's issuer URL: the workload token's audience."""
    federation_key, client_key = Signer("bench-federation-1"), Signer("bench-client-1")
    federation_jwks = federation_key.write_public_jwks(workdir / "bench-federation.jwks.json")
    client_jwks = client_key.write_public_jwks(workdir / "bench-client.jwks.json")
    env = tokensvc_env(database_url)
    run_tokensvc(
        ["federation", "add", "--issuer", FEDERATION_ISSUER, "--jwks-file", str(federation_jwks)],
        env,
        timeout=60,
        error=PrepareError,
        what=f"federation add --issuer {FEDERATION_ISSUER} (one left by an earlier run on "
        f"this database? `tokensvc federation remove {FEDERATION_ISSUER}`)",
    )
    machine = ("--grant-type", "client_credentials", "--scope", "api:read")
    federated = add_client(
        database_url,
        "--name",
        "bench-federated",
        *machine,
        "--auth-method",
        "federated_jwt",
        "--federated-issuer",
        FEDERATION_ISSUER,
        "--federated-subject",
        SUBJECT_PATTERN,
    )
    private_key_jwt = add_client(
        database_url,
        "--name",
        "bench-private-key-jwt",
        *machine,
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(client_jwks),
    )
    now = int(time.time())
    workload_token = federation_key.sign(
        {
            "iss": FEDERATION_ISSUER,
            "sub": WORKLOAD_SUBJECT,
            "aud": issuer,
            "iat": now,
            "nbf": now - 5,
            "exp": now + WORKLOAD_TOKEN_LIFETIME,
            "jti": secrets.token_urlsafe(16),
        }
    )
    return AssertionClients(
        issuer=issuer,
        federated_id=federated["client_id"],
        workload_token=workload_token,
        private_key_jwt_id=private_key_jwt["client_id"],
        client_key=client_key,
    )
