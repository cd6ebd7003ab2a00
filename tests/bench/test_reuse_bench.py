"""The kit's cc_reused workload: client_credentials by a `--reuse-access-token` client, measured
against client_credentials signing a token per request, in a table of its own without a target
(the cache is opt-in and never used to meet one)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report
from tests.bench.test_resources import _run


def test_cc_reused_runs_against_client_credentials(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(tmp_path, redis_url, postgres_admin_url, "cc,reused")
    phases = {(p["name"], p["mode"]): p for p in data["phases"]}
    for mode in ("closed", "open"):
        phase = phases[("cc_reused", mode)]
        assert phase["errors"]["total"] == 0, (mode, phase["errors"])
        assert phase["requests"] > 0 and phase["ok"] == phase["requests"], mode
    closed = phases[("cc_reused", "closed")]
    assert closed["vs_client_credentials"]["rps"] > 0
    assert "target_vs_client_credentials" not in closed  # never a target
    assert data["jwts_per_response"]["cc_reused"] == {}  # nothing signed per request
    assert report.REUSE.title in summary
