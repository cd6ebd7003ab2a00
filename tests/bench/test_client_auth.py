"""The client-authentication workloads' request lines (benchmarks/assertions.py), checked
without a stack: what each request carries, that every private_key_jwt assertion is one of a
kind and verifies with the JWKS the kit registers, and that a mix hands lines given back to
the pool they came from. The spawned run is in test_bench_smoke.py."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import KeySet

from benchmarks import cli
from benchmarks.assertions import (
    ASSERTION_LIFETIME,
    JWT_BEARER,
    AssertionClients,
    Signer,
)
from benchmarks.prepare import CLIENT_AUTH, Line, MixPool, PreparedPool, StaticPool

ISSUER = "http://127.0.0.1:8080"


def _form(line: Line) -> dict[str, str]:
    basic, body = line
    assert basic == ""  # no secret anywhere: the assertion is the credential
    form = {k: v[0] for k, v in parse_qs(body, strict_parsing=True).items()}
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == JWT_BEARER
    return form


def _clients() -> AssertionClients:
    workload_token = "header.payload.signature"  # never verified here
    return AssertionClients(ISSUER, "fed-client", workload_token, "pk-client", Signer("k1"))


def test_private_key_jwt_lines_carry_fresh_verifiable_assertions() -> None:
    clients = _clients()
    keys = KeySet.import_key_set(clients.client_key.public_jwks())  # type: ignore[arg-type]
    assert all("d" not in k for k in clients.client_key.public_jwks()["keys"])  # public only
    before = int(time.time())
    lines = clients.private_key_jwt_lines(50, {"scope": "api:read"})
    jtis = set()
    for line in lines:
        form = _form(line)
        assert form["client_id"] == "pk-client" and form["scope"] == "api:read"
        token = jwt.decode(form["client_assertion"], keys, algorithms=["ES256"])
        claims = token.claims
        assert token.header["kid"] == "k1"
        assert claims["iss"] == claims["sub"] == "pk-client"
        assert claims["aud"] == ISSUER + "/token"
        assert before <= claims["iat"] and claims["exp"] == claims["iat"] + ASSERTION_LIFETIME
        jtis.add(claims["jti"])
    assert len(jtis) == len(lines)  # one use each


def test_the_federated_line_is_one_reused_workload_token() -> None:
    clients = _clients()
    first, again = clients.federated_line({}), clients.federated_line({})
    assert first == again
    form = _form(first)
    assert form["client_id"] == "fed-client"
    assert form["client_assertion"] == "header.payload.signature"


def test_a_mix_gives_lines_back_to_their_own_pool() -> None:
    # both pools send grant_type=client_credentials: only where a line came from tells them apart
    clients = _clients()
    fresh = PreparedPool("cc_private_key_jwt", lambda n: clients.private_key_jwt_lines(n, {}))
    reused = StaticPool("cc_federated_jwt", clients.federated_line({}))
    mix = MixPool({"cc_private_key_jwt": (fresh, 1.0), "cc_federated_jwt": (reused, 1.0)})
    lines = mix.take(40)
    assert fresh.prepared and len(lines) == 40
    spent, unsent = lines[:10], lines[10:]
    left = len(fresh)
    mix.give_back(unsent)
    back = sum(1 for line in unsent if line != reused.line)
    assert len(fresh) == left + back
    assert not set(fresh.take(len(fresh))) & set(spent)  # a spent assertion is never handed out


def test_the_default_run_has_the_client_auth_workloads_where_they_can_be_registered() -> None:
    assert set(CLIENT_AUTH) <= set(cli._workloads(None, True, True, True))
    assert not set(CLIENT_AUTH) & set(cli._workloads(None, True, False, False))
    assert cli._workloads("private_key_jwt,cc,federated_jwt", False, False, False) == [
        "client_credentials",
        *CLIENT_AUTH,
    ]
