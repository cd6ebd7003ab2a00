"""The cc_dpop workload (benchmarks/dpop.py) checked without a stack: each line is the
baseline's request plus a proof of its own that the service's own checker accepts, the
generators put the proof in a `DPoP` header, the pre-run check wants a token bound to the
kit's key, phases too long for the proofs' window are refused, and the comparison table; then
a short spawned run against client_credentials."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from benchmarks import cli, dpop, report
from benchmarks.generators.httpclient import build_request
from benchmarks.prepare import Client, PrepareError, client_credentials_line
from tests.bench.kit import run_kit
from tests.bench.test_resources import _assert_clean_against_the_baseline, _phase, _report, _run
from tokensvc import dpopproof

ISSUER = "http://127.0.0.1:8080"
MACHINE = Client("bench-machine", "s3cret")


def _prover() -> dpop.DpopProver:
    return dpop.DpopProver(ISSUER + "/token")


def test_each_line_is_the_baselines_plus_a_fresh_proof_the_service_accepts() -> None:
    prover = _prover()
    params = {"scope": "api:read"}
    lines = dpop.dpop_lines(MACHINE, prover, 50, params)
    baseline = client_credentials_line(MACHINE, params)
    now = time.time()
    jtis = set()
    for basic, body, proof in lines:
        assert (basic, body) == baseline  # authenticated exactly like the baseline
        checked = dpopproof.check(
            proof, method="POST", url=dpopproof.normalized_url(ISSUER + "/token"), now=now
        )
        assert checked.jkt == prover.thumbprint()
        header = jwt.decode(proof, ECKey.import_key(prover.public_jwk())).header
        assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]  # public only
        jtis.add(checked.jti)
    assert len(jtis) == len(lines)  # one use each


def test_the_thumbprint_is_rfc_7638s() -> None:
    prover = _prover()
    assert prover.thumbprint() == dpopproof.thumbprint(prover.public_jwk())
    assert prover.thumbprint() == prover.key.thumbprint()  # joserfc's, independently


def test_the_python_generator_sends_the_proof_as_a_dpop_header() -> None:
    head = b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    basic, body, proof = dpop.dpop_lines(MACHINE, _prover(), 1, {})[0]
    raw = build_request(head, basic, body, proof).decode()
    assert f"\r\nAuthorization: Basic {basic}\r\nDPoP: {proof}\r\n" in raw
    assert raw.endswith(f"Content-Length: {len(body)}\r\n\r\n{body}")
    assert "DPoP" not in build_request(head, basic, body).decode()  # two fields: no header


def _token(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{payload}.sig"


def test_the_pre_run_check_wants_a_token_bound_to_the_kits_key() -> None:
    prover = _prover()
    check = dpop.check_dpop_bound(prover)
    bound = {"token_type": "DPoP", "access_token": _token({"cnf": {"jkt": prover.thumbprint()}})}
    check("cc_dpop", bound)
    with pytest.raises(PrepareError, match="token_type is 'Bearer'"):
        check("cc_dpop", {**bound, "token_type": "Bearer"})
    with pytest.raises(PrepareError, match="cnf"):
        check("cc_dpop", {**bound, "access_token": _token({"cnf": {"jkt": "another"}})})


def test_cc_dpop_is_in_the_default_run_and_has_an_alias() -> None:
    assert "cc_dpop" in cli._workloads(None, True, False, False)  # nothing to register
    assert cli._workloads("dpop,cc", False, False, False) == ["client_credentials", "cc_dpop"]


def test_a_phase_longer_than_the_proofs_window_allows_is_refused() -> None:
    too_long = str(dpop.max_phase() - 1)  # + the default 2 s warmup
    result = run_kit("--spawn", "--grants", "cc,dpop", "--duration", too_long, timeout=60)
    assert result.returncode == 2
    assert f"cc_dpop: --duration + --warmup must be at most {dpop.max_phase()} s" in result.stderr


def test_cc_dpop_has_its_table_against_client_credentials() -> None:
    data = _report(_phase("client_credentials", 1000, 2000), _phase("cc_dpop", 650, 3000))
    phases = {p["name"]: p for p in data["phases"]}
    assert phases["cc_dpop"]["vs_client_credentials"]["rps"] == 0.65
    assert phases["cc_dpop"]["target_vs_client_credentials"] == {"rps_at_least": 0.6, "met": True}
    lines = report.table(data).splitlines()
    at = lines.index(report.DPOP.title)
    assert [r.split()[:4] for r in lines[at + 2 : at + 4]] == [
        ["client_credentials", "1,000", "1.00", "-"],
        ["cc_dpop", "650", "0.65", "0.60"],
    ]
    assert lines[at + 4] == report.DPOP.footnote


def test_cc_dpop_runs_against_client_credentials(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(tmp_path, redis_url, postgres_admin_url, "cc,dpop")
    _assert_clean_against_the_baseline(data, "cc_dpop")
    assert report.DPOP.title in summary
