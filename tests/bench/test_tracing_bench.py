"""The cc_traced workload: client_credentials at a second spawned tokensvc with tracing on
(1% of traces sampled, exported to the kit's OTLP receiver), against client_credentials at
the untraced one in the same run (README "Tracing")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import cli, report
from tests.bench.test_resources import _assert_clean_against_the_baseline, _phase, _report, _run


def test_cc_traced_is_in_a_spawned_default_run_only() -> None:
    assert "cc_traced" in cli._workloads(None, True, True, True)
    assert "cc_traced" not in cli._workloads(None, True, True, False)  # --target
    assert cli._workloads("traced,cc", False, False, True) == ["client_credentials", "cc_traced"]


def test_cc_traced_needs_spawn() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--target", "http://127.0.0.1:9/token"),
            *("--client-id", "x", "--client-secret", "y", "--grants", "cc_traced"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "cc_traced needs --spawn" in result.stderr


def test_cc_traced_has_its_table_and_its_target() -> None:
    data = _report(_phase("client_credentials", 1000, 2000), _phase("cc_traced", 880, 2100))
    phases = {p["name"]: p for p in data["phases"]}
    assert phases["cc_traced"]["target_vs_client_credentials"] == {
        "rps_at_least": 0.9,
        "met": False,
    }
    lines = report.table(data).splitlines()
    at = lines.index(report.TRACING.title)
    assert [r.split()[:4] for r in lines[at + 2 : at + 4]] == [
        ["client_credentials", "1,000", "1.00", "-"],
        ["cc_traced", "880", "0.88", "0.90!"],
    ]


def test_cc_traced_runs_against_client_credentials(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(tmp_path, redis_url, postgres_admin_url, "cc,traced")
    _assert_clean_against_the_baseline(data, "cc_traced")
    assert report.TRACING.title in summary
    (note,) = [n for n in data["notes"] if n.startswith("cc_traced:")]
    assert "parentbased_traceidratio 0.01" in note


def test_the_tracing_command_alternates_rounds_and_reports_the_median(tmp_path: Path) -> None:
    """`python -m benchmarks tracing`: pairs of rounds against the untraced and the traced
    service (order swapped each pair), every answer a 200, spans exported at 1%."""
    out = tmp_path / "tracing"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "tracing", "--pairs", "2", "--duration", "1"),
            *("--warmup", "0", "--concurrency", "4", "--quiet", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert len(data["pairs"]) == 2
    for pair in data["pairs"]:
        for side in ("off", "on"):
            assert pair[side]["requests"] > 0 and pair[side]["errors"] == 0
        assert pair["ratio"] == round(pair["on"]["rps"] / pair["off"]["rps"], 3)
    ratios = sorted(p["ratio"] for p in data["pairs"])
    assert data["median_ratio"] == round((ratios[0] + ratios[1]) / 2, 3)
    assert data["target"] == {"ratio_at_least": 0.9, "met": data["median_ratio"] >= 0.9}
    assert "median on/off" in result.stdout
