"""The workloads for a registered API (benchmarks/resources.py): their request lines and
pre-checks without a stack, their comparison with client_credentials in the report, and a
short spawned run of each (cc_resource; token_exchange where the service has the grant)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from benchmarks import cli, report
from benchmarks.generators.common import Outcome
from benchmarks.histogram import Histogram
from benchmarks.prepare import Client, Line, PrepareError
from benchmarks.resources import (
    ACCESS_TOKEN_TYPE,
    RESOURCE,
    TOKEN_EXCHANGE,
    ResourceClients,
    check_exchanged,
    check_for_resource,
)
from benchmarks.runner import PhaseResult
from tests.bench.kit import run_kit, spawned

CLIENTS = ResourceClients(
    Client("res-client", "res-secret"),
    Client("subject-client", "subject-secret"),
    Client("exchanger", "exchanger-secret"),
)


def _form(line: Line, client: Client) -> dict[str, str]:
    basic, body = line
    assert basic == client.basic() != ""  # client_secret_basic, like the baseline
    return {k: v[0] for k, v in parse_qs(body, strict_parsing=True).items()}


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln"


def test_the_cc_resource_line_is_the_baselines_plus_the_resource() -> None:
    form = _form(CLIENTS.resource_line(), CLIENTS.resource)
    assert form == {"grant_type": "client_credentials", "resource": RESOURCE}
    assert CLIENTS.resource_line()[1].endswith("&resource=https%3A%2F%2Fbench-api.example")


def test_the_exchange_line_sends_the_subject_token_for_the_api() -> None:
    assert CLIENTS.subject is not None and CLIENTS.exchanger is not None
    subject = _form(CLIENTS.subject_line(), CLIENTS.subject)  # for the issuer: no resource
    assert subject == {"grant_type": "client_credentials", "scope": "bench:read"}
    token = _jwt({"aud": "http://issuer", "scope": "bench:read"})
    assert _form(CLIENTS.exchange_line(token), CLIENTS.exchanger) == {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "resource": RESOURCE,
        "scope": "bench:read",
    }


def test_the_pre_checks_want_a_token_for_the_api() -> None:
    check_for_resource("cc_resource", {"access_token": _jwt({"aud": RESOURCE})})
    check_for_resource("cc_resource", {"access_token": _jwt({"aud": [RESOURCE]})})
    for aud in ("http://issuer", [RESOURCE, "https://other.example"], None):
        with pytest.raises(PrepareError, match="cc_resource: the access token's aud is"):
            check_for_resource("cc_resource", {"access_token": _jwt({"aud": aud})})
    with pytest.raises(PrepareError, match="not a JWT"):
        check_for_resource("cc_resource", {"access_token": "opaque"})
    exchanged = {"access_token": _jwt({"aud": RESOURCE}), "issued_token_type": ACCESS_TOKEN_TYPE}
    check_exchanged("token_exchange", exchanged)
    with pytest.raises(PrepareError, match="issued_token_type"):
        check_exchanged("token_exchange", {**exchanged, "issued_token_type": "jwt"})


def test_both_are_in_the_default_run_where_the_kit_can_register_clients() -> None:
    default = cli._workloads(None, True, True, True)
    assert "cc_resource" in default and "token_exchange" in default
    cannot = cli._workloads(None, True, False, False)  # nothing can be registered
    assert "cc_resource" not in cannot and "token_exchange" not in cannot
    assert cli._workloads("exchange,resource,cc", False, False, False) == [
        "client_credentials",
        "cc_resource",
        "token_exchange",
    ]


def _phase(name: str, rps: int, latency_us: int) -> PhaseResult:
    outcome = Outcome(
        seconds=1.0,
        completed=rps,
        statuses=Counter({200: rps}),
        hist=Histogram({latency_us: rps}),
    )
    return PhaseResult(name, "closed", "wrk", concurrency=32, outcome=outcome)


def _report(*phases: PhaseResult, **extra: Any) -> dict[str, Any]:
    """The report of `phases`, with `extra` in its meta."""
    meta = {
        "started_at": "2026-12-02 00:00:00 UTC",
        "commit": "abc1234",
        "machine": {"description": "test"},
        "target": {"description": "test"},
        "engines": {"closed": "wrk", "open": "not run"},
        "config": {"duration_s": 1, "warmup_s": 0},
        "notes": [],
        "profiles": [],
        **extra,
    }
    ctx = {
        "server_capacity": 1,
        "generator_capacity": 1,
        "other_cores": [],
        "service_cores": [],
        "service_measured": False,
    }
    return report.build(meta, list(phases), ctx, None, {})


def test_each_comparison_with_client_credentials_has_its_table_and_targets() -> None:
    data = _report(
        _phase("client_credentials", 1000, 2000),
        _phase("cc_federated_jwt", 900, 2200),
        _phase("cc_resource", 960, 2000),
        _phase("token_exchange", 700, 3000),
    )
    phases = {p["name"]: p for p in data["phases"]}
    assert "vs_client_credentials" not in phases["client_credentials"]
    for name, ratio, goal, met in (
        ("cc_federated_jwt", 0.9, 0.80, True),
        ("cc_resource", 0.96, 0.95, True),
        ("token_exchange", 0.7, 0.80, False),
    ):
        assert phases[name]["vs_client_credentials"]["rps"] == ratio, name
        assert phases[name]["target_vs_client_credentials"] == {"rps_at_least": goal, "met": met}
    lines = report.table(data).splitlines()
    auth = lines.index(report.CLIENT_AUTHENTICATION.title)
    resources = lines.index(report.RESOURCES.title)
    assert auth < resources
    # each table: its header, the baseline, its own rows, its footnote
    assert lines[auth + 1].split()[2:4] == ["x", "secret"]
    assert [r.split()[0] for r in lines[auth + 2 : auth + 4]] == [
        "client_credentials",
        "cc_federated_jwt",
    ]
    assert lines[auth + 4] == report.CLIENT_AUTHENTICATION.footnote
    assert lines[resources + 1].split()[2:4] == ["x", "cc"]
    rows = lines[resources + 2 : resources + 5]
    assert [r.split()[:4] for r in rows] == [
        ["client_credentials", "1,000", "1.00", "-"],
        ["cc_resource", "960", "0.96", "0.95"],
        ["token_exchange", "700", "0.70", "0.80!"],
    ]
    assert rows[1].endswith(report.RESOURCES.rows["cc_resource"])
    assert lines[resources + 5] == report.RESOURCES.footnote


def test_no_comparison_table_without_the_baseline() -> None:
    text = report.table(_report(_phase("cc_resource", 960, 2000)))
    assert report.RESOURCES.title not in text


def _run(
    tmp_path: Path,
    redis_url: str,
    postgres_admin_url: str,
    grants: str,
    *extra: str,
    timeout: float = 180,
) -> tuple[dict[str, Any], str]:
    """A short spawned run of `grants` (`extra` options last: they win), its JSON and table."""
    out = tmp_path / "bench"
    result = run_kit(
        *spawned(redis_url, postgres_admin_url, out),
        "--grants",
        grants,
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--rate",
        "100",
        "--no-floor",
        *extra,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "report.json").read_text()), (out / "summary.txt").read_text()


def _assert_clean_against_the_baseline(data: dict[str, Any], name: str) -> None:
    phases = {(p["name"], p["mode"]): p for p in data["phases"]}
    for mode in ("closed", "open"):
        phase = phases[(name, mode)]
        assert phase["errors"]["total"] == 0, (mode, phase["errors"])
        assert phase["requests"] > 0 and phase["ok"] == phase["requests"], mode
    closed = phases[(name, "closed")]
    assert closed["vs_client_credentials"]["rps"] > 0
    assert set(closed["target_vs_client_credentials"]) == {"rps_at_least", "met"}
    assert data["jwts_per_response"][name] == {"access_token": 1}


def test_cc_resource_runs_against_client_credentials(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(tmp_path, redis_url, postgres_admin_url, "cc,resource")
    _assert_clean_against_the_baseline(data, "cc_resource")
    assert report.RESOURCES.title in summary


def test_token_exchange_runs_against_client_credentials(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(tmp_path, redis_url, postgres_admin_url, "cc,exchange")
    _assert_clean_against_the_baseline(data, "token_exchange")
    assert report.RESOURCES.title in summary
