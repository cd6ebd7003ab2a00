"""The soak (issue 7), short: eight seconds of mixed grants at 100 req/s in 2-second windows
against a spawned stack (the session's Redis and Postgres, a fresh database). It asserts that
nothing failed, that refresh chains rotated and codes were minted as the run went, and that the
report is well formed with finite growth and drift readings — never a timing, never a memory
threshold (the verdict is the soak's reading of a noisy machine, not a test's). The analysis
arithmetic is checked on made-up windows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import render
from benchmarks.histogram import Histogram
from benchmarks.soak import analysis
from benchmarks.soak.cli import main as soak_main
from tests.bench.kit import run_kit, spawned

GRANTS = ("client_credentials", "authorization_code", "refresh_token")
WINDOWS = 4


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.fixture(scope="module")
def soak(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, postgres_admin_url: str
) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("soak")
    result = run_kit(
        "soak",
        *spawned(redis_url, postgres_admin_url, out),
        "--duration",
        str(2 * WINDOWS),
        "--window",
        "2",
        "--warmup",
        "2",
        "--rate",
        "100",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "verdict: " in result.stdout
    return json.loads((out / "report.json").read_text()), out


def test_every_window_is_measured_without_errors(soak: tuple[dict[str, Any], Path]) -> None:
    report, _ = soak
    assert report["schema"] == "tokensvc-soak/1"
    windows = report["windows"]
    assert [w["index"] for w in windows] == list(range(WINDOWS))
    assert [w["warmup"] for w in windows] == [True] + [False] * (WINDOWS - 1)
    rows = []
    for w in windows:
        where = f"window {w['index']}"
        assert w["errors"]["total"] == 0, (where, w["errors"])
        assert not w["starved"], (where, w["starved"])
        assert w["requests"] > 0 and w["ok"] == w["requests"], where
        assert set(w["by_grant"]) == set(GRANTS), (where, w["by_grant"])
        assert all(g["requests"] > 0 for g in w["by_grant"].values()), where
        p = w["latency_ms"]
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (where, p)
        assert w["service"]["rss_mib"] > 0 and w["service"]["fds"] > 0, where
        assert w["service"]["processes"] >= 1 and w["service"]["threads"] >= 1, where
        assert w["redis"]["used_memory_mib"] > 0 and w["redis"]["keys"] > 0, where
        rows.append((w["postgres"]["refresh_tokens"]["rows"], w["postgres"]["grants"]["rows"]))
    # every window exchanged codes (new grants) and rotated refresh tokens (new rows)
    assert all(
        a < b for a, b in zip([r[0] for r in rows], [r[0] for r in rows[1:]], strict=False)
    ), rows
    assert all(
        a < b for a, b in zip([r[1] for r in rows], [r[1] for r in rows[1:]], strict=False)
    ), rows
    assert report["baseline"]["service"]["rss_mib"] > 0


def test_credentials_are_made_as_the_run_goes(soak: tuple[dict[str, Any], Path]) -> None:
    report, _ = soak
    load = report["summary"]["throughput"]
    answered = {g: sum(w["by_grant"][g]["requests"] for w in report["windows"]) for g in GRANTS}
    assert load["scheduled"] == sum(answered.values()) == load["requests"]
    # each refresh answered 200 rotated its chain; each code exchanged started one
    assert load["chains"]["rotations"] == answered["refresh_token"]
    assert load["chains"]["broken"] == 0
    assert load["chains"]["started"] >= answered["authorization_code"]
    assert load["codes"]["minted"] >= answered["authorization_code"]
    assert load["codes"]["ttl_s"] == 60 and load["codes"]["mint_failures"] == 0


def test_growth_drift_and_verdict_are_reported(soak: tuple[dict[str, Any], Path]) -> None:
    report, out = soak
    summary = report["summary"]
    rss = summary["memory"]["service_rss_mib"]
    for key in ("baseline", "first_window", "last_window", "growth", "min", "max", "slope_per_min"):
        assert _finite(rss[key]), (key, rss)
    assert rss["first_window"] > 0 and rss["fit_windows"] == WINDOWS - 1
    assert _finite(summary["memory"]["service_fds"]["slope_per_min"])
    latency = summary["latency"]
    assert _finite(latency["p99_drift"]) and latency["p99_drift"] > 0
    assert _finite(latency["p50_drift"]) and latency["p50_drift"] > 0
    assert latency["early_windows"] == [1] and latency["late_windows"] == [WINDOWS - 1]
    tokens = summary["stores"]["postgres"]["refresh_tokens"]["rows"]
    assert tokens["last_window"] > tokens["baseline"] and tokens["slope_per_min"] > 0
    assert summary["errors"]["total"] == 0
    verdict = summary["verdict"]
    assert verdict["status"] in ("PASS", "FAIL") and verdict["failed"] in (
        [],
        ["memory growth"],
        ["latency drift"],
        ["memory growth", "latency drift"],
    )
    assert (out / "summary.txt").read_text().rstrip().endswith(verdict["line"])
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 8 and "<script" not in page
    assert render.page(out / "report.json") == page  # the render command makes it again
    text = (out / "report.json").read_text()
    assert "internal_token" not in text and "--redis-url ***" in report["command"]


def _window(i: int, rss: float, warmup: bool = False, errors: int = 0) -> dict[str, Any]:
    return {
        "index": i,
        "start_s": 10.0 * i,
        "end_s": 10.0 * (i + 1),
        "warmup": warmup,
        "requests": 100,
        "errors": {
            "total": errors,
            "by_status": {},
            "socket": {},
            "by_error": {"400 invalid_grant": errors} if errors else {},
        },
        "starved": {},
        "service": {"rss_mib": rss, "fds": 20, "threads": 3},
    }


def test_analysis_slope_drift_and_verdict() -> None:
    # RSS grows 0.5 MiB a window (3 MiB/min) after a warm-up window that jumped 40 MiB
    windows = [_window(0, 60.0, warmup=True)] + [_window(i, 100.0 + 0.5 * i) for i in range(1, 10)]
    hists = [Histogram({1000: 98, 5000: 2})] * 4 + [Histogram({1000: 98, 20_000: 2})] * 6
    config = {"rate": 10, "max_rss_slope_mib_per_min": 1.0, "max_p99_drift": 2.0}
    load = {"scheduled": 1000}
    summary = analysis.summarise(windows, hists, {}, load, config)
    rss = summary["memory"]["service_rss_mib"]
    assert rss["slope_per_min"] == pytest.approx(3.0)
    assert rss["growth"] == pytest.approx(44.5) and rss["fit_windows"] == 9
    latency = summary["latency"]
    assert latency["early_windows"] == [1, 2, 3] and latency["late_windows"] == [7, 8, 9]
    assert latency["p99_drift"] == pytest.approx(4.0) and latency["p50_drift"] == 1.0
    assert summary["verdict"]["status"] == "FAIL"
    assert summary["verdict"]["failed"] == ["memory growth", "latency drift"]

    flat = [_window(i, 100.0, errors=1 if i == 5 else 0) for i in range(10)]
    summary = analysis.summarise(flat, [Histogram({1000: 100})] * 10, {}, load, config)
    assert summary["memory"]["service_rss_mib"]["slope_per_min"] == 0.0
    assert summary["errors"]["by_error"] == {"400 invalid_grant": 1}
    assert summary["verdict"]["failed"] == ["errors"]

    one = analysis.summarise([_window(0, 100.0)], [Histogram({1000: 1})], {}, load, config)
    assert one["verdict"]["status"] == "INCONCLUSIVE" and one["verdict"]["missing"] == ["RSS slope"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--spawn", "--duration", "10", "--warmup", "10"],
        ["--spawn", "--duration", "ten"],
        ["--spawn", "--window", "0.5"],
        ["--target", "http://127.0.0.1:1/token"],
        ["--spawn", "--mix", "password=1"],
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert soak_main(argv) == 2
    assert capsys.readouterr().err.startswith("benchmarks soak: ")
