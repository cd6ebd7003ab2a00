"""Smoke run of the load-testing kit (issue 5): about a second per workload against a spawned
stack (the session's Redis and Postgres, a fresh database), closed loop (wrk when installed,
else the Python generator) and open loop (the Python generator). Every workload of the default
run, the client-authentication ones included (a reused federated workload token, a fresh
private_key_jwt assertion per request) and client_credentials for a registered API
(cc_resource), and a mix of all of them. It asserts that nothing
failed (every answer a 200, the sample of each a token) and that the report is well formed,
never how fast anything was."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import render
from tests.bench.kit import run_kit, spawned

GRANTS = ("client_credentials", "authorization_code", "refresh_token")
CLIENT_AUTH = ("cc_federated_jwt", "cc_private_key_jwt")
VERSUS_CC = (*CLIENT_AUTH, "cc_resource")  # each against client_credentials of the same run
WORKLOADS = (*GRANTS, *VERSUS_CC, "mix")
MIX = "cc=35,refresh=20,code=10,federated_jwt=15,private_key_jwt=10,resource=10"  # aliases
PERCENTILES = ("p50", "p90", "p99", "p99.9", "max")


def test_every_grant_runs_without_errors_and_reports(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    out = tmp_path / "bench"
    result = run_kit(
        *spawned(redis_url, postgres_admin_url, out),
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--rate",
        "100",
        "--batch",
        "4000",
        "--mix",
        MIX,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "tokensvc-bench/1"
    phases = {(p["name"], p["mode"]): p for p in report["phases"]}
    assert ("floor", "closed") in phases
    assert report["floor"]["name"] == "floor"
    for name in WORKLOADS:
        assert (name, "closed") in phases, name
        assert (name, "open") in phases, name
    for (name, mode), phase in phases.items():
        where = f"{name} {mode}"
        assert phase["errors"]["total"] == 0, (where, phase["errors"])
        assert phase["requests"] > 0 and phase["ok"] == phase["requests"], where
        latencies = [phase["latency_ms"][p] for p in PERCENTILES]
        assert latencies == sorted(latencies) and latencies[0] > 0, (where, latencies)
        curve = [ms for _, ms in phase["percentile_curve"]]
        assert curve == sorted(curve), where
        if name != "floor":
            assert "rps" in phase["vs_floor"], where
            assert phase["time_per_request_us"]["requests"] > 0, where
        if mode == "open":
            assert phase["open_loop"]["scheduled"] > 0, where
    for name in (*GRANTS, *VERSUS_CC):  # the sample answer of each carried an access token
        assert report["jwts_per_response"][name].get("access_token") == 1, name
    assert set(report["config"]["mix"]) == {*GRANTS, *VERSUS_CC}
    for name in VERSUS_CC:  # against client_credentials of the same run
        phase = phases[(name, "closed")]
        assert phase["vs_client_credentials"]["rps"] > 0, name
        assert set(phase["target_vs_client_credentials"]) == {"rps_at_least", "met"}, name
    for name in ("authorization_code", "refresh_token"):  # one commit per batch of writes
        spent = phases[(name, "closed")]["time_per_request_us"]
        assert 0 < spent["postgres_commits_per_request"] <= 1, name
        write = "grants.issue" if name == "authorization_code" else "grants.rotate"
        assert spent["operations"][write]["round_trips_per_request"] > 0, name
    assert "postgres_commits_per_request" not in phases[GRANTS[0], "closed"]["time_per_request_us"]
    summary = (out / "summary.txt").read_text()
    assert "Postgres commits per request (batched writes): authorization_code closed" in summary
    assert "client authentication, closed loop" in summary
    assert "resources, closed loop" in summary
    assert report["generator"]["floor_rps"] > 0
    assert report["engines"]["closed"] and report["engines"]["open"]
    assert (out / "summary.txt").read_text().startswith("tokensvc /token benchmark")
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 3 and "<script" not in page
    assert render.page(out / "report.json") == page  # the render command makes it again
