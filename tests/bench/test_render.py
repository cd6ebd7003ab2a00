"""`python -m benchmarks render`: the HTML page of every committed report.json (load tests and
the soak), checked against the JSON it was made from; what is committed under
benchmarks/results; and the one-way imports between the kit's commands."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import render
from tests.bench.kit import ROOT, run_kit

RESULTS = ROOT / "benchmarks" / "results"
REPORTS = sorted(RESULTS.glob("*/report.json"))
COMMITTED_PER_RUN = {"report.json", "summary.txt"}
PROFILE_TEXT = re.compile(r"profile-[a-z0-9_]+\.txt")  # --profile's summary of each flame graph


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _render(path: Path, tmp_path: Path) -> str:
    out = tmp_path / "page.html"
    assert render.main([str(path), "-o", str(out)]) == 0
    return out.read_text()


def _pre(page: str) -> str:
    """The text of the page's first <pre> (the table or the soak's summary)."""
    match = re.search(r"<pre>(.*?)</pre>", page, re.DOTALL)
    assert match, "no <pre> in the page"
    return html.unescape(match.group(1))


def test_there_are_committed_reports_of_both_kinds() -> None:
    schemas = {_load(path)["schema"] for path in REPORTS}
    assert schemas == {"tokensvc-bench/1", "tokensvc-soak/1"}, schemas


@pytest.mark.parametrize("path", REPORTS, ids=[p.parent.name for p in REPORTS])
def test_a_committed_report_renders_to_its_page(path: Path, tmp_path: Path) -> None:
    report = _load(path)
    page = _render(path, tmp_path)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page and " src=" not in page  # nothing fetched
    # the text made from the JSON is the summary committed next to it
    summary = (path.parent / "summary.txt").read_text().rstrip("\n")
    text = _pre(page) if report["schema"] == "tokensvc-bench/1" else _pre(page.split("</svg>")[-1])
    assert text == summary
    if report["schema"] == "tokensvc-bench/1":
        _check_bench_page(report, page, text)
    else:
        _check_soak_page(report, page, text)


def _check_bench_page(report: dict[str, Any], page: str, table: str) -> None:
    assert f"<title>tokensvc benchmark {report['started_at']}</title>" in page
    rows = table.splitlines()
    for phase in report["phases"]:
        name, mode = phase["name"], phase["mode"]
        # its row in the table, with the throughput from the JSON
        rate = phase["rps"] if mode == "closed" else phase["rate_target"]
        row = f"{name:20} {rate:>9,.0f} "
        assert any(r.startswith(row) for r in rows), (name, mode, row)
        # its line in the charts' legends
        assert f">{html.escape(name)} ({mode})</text>" in page, (name, mode)
        for versus in ("vs_floor", "vs_client_credentials"):  # its bars, labelled with ratios
            if mode == "closed" and versus in phase:
                assert f">{phase[versus]['rps']:.2f}</text>" in page, (name, versus, phase[versus])
        if "vs_client_credentials" in phase:  # and its row against the client secret
            row = f"{name:20} {phase['rps']:>9,.0f} {phase['vs_client_credentials']['rps']:>9.2f} "
            assert row in table, (name, row)
    closed = [p for p in report["phases"] if p["mode"] == "closed"]
    opened = [p for p in report["phases"] if p["mode"] == "open"]
    charts = page.count("<svg")
    assert charts >= 4 + bool(opened), charts
    # the closed-loop percentile chart: one curve per closed-loop phase
    first = page[page.index("<svg") : page.index("</svg>")]
    assert first.count("<polyline") == len(closed)
    asked = report["config"]["workloads"]  # every workload the run was asked for is in it
    assert "client_credentials" in asked, asked
    assert set(asked) <= {p["name"] for p in report["phases"]}, asked


def _check_soak_page(report: dict[str, Any], page: str, summary: str) -> None:
    assert f"<title>tokensvc soak {report['started_at']}</title>" in page
    verdict = report["summary"]["verdict"]["line"]
    assert f"<p><b>{html.escape(verdict)}</b></p>" in page
    assert summary.endswith(verdict)
    assert page.count("<svg") == 9
    windows = report["windows"]
    for w in windows:  # each window's row, with its p99 from the JSON
        row = f"{w['index'] + 1:>5}{'w' if w['warmup'] else ' '} {w['end_s']:>5.0f}s "
        line = next(r for r in summary.splitlines() if r.startswith(row))
        assert f" {w['latency_ms']['p99']:>7.2f} " in line, (row, line)
    # the RSS chart: the baseline and one point per window
    rss = page[page.index("<svg") : page.index("</svg>")]
    points = re.search(r'<polyline points="([^"]+)"', rss)
    assert points and len(points.group(1).split()) == len(windows) + 1
    for grant in ("client_credentials", "authorization_code", "refresh_token"):
        assert f">{grant}</text>" in page, grant


def test_render_command_writes_the_page_beside_the_report(tmp_path: Path) -> None:
    source = next(p for p in REPORTS if _load(p)["schema"] == "tokensvc-soak/1")
    run = tmp_path / source.parent.name
    run.mkdir()
    shutil.copy(source, run / "report.json")
    result = run_kit("render", str(run), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run / "report.html")
    assert (run / "report.html").read_text() == render.page(source)


def test_render_refuses_what_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "report.json"
    other.write_text('{"schema": "something/1"}')
    assert render.main([str(other)]) == 2
    assert "schema 'something/1'" in capsys.readouterr().err
    other.write_text("{")
    assert render.main([str(other)]) == 2
    assert render.main([str(tmp_path / "missing.json")]) == 1
    assert render.main([str(REPORTS[0]), str(REPORTS[0]), "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def _git(*args: str) -> list[str]:
    """The words `git ARGS` prints in the checkout (whatever its exit status)."""
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.split()


def test_only_summaries_and_json_are_committed_as_results() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = _git("ls-files", "--", "benchmarks/results")
    assert listed
    for name in listed:
        path = Path(name).relative_to("benchmarks/results")
        if len(path.parts) == 1:  # .gitignore, limits_overhead.txt
            assert path.suffix == ".txt" or path.name == ".gitignore", name
        else:
            assert path.name in COMMITTED_PER_RUN or PROFILE_TEXT.fullmatch(path.name), name
    written = ["benchmarks/results/r/report.html", "benchmarks/results/r/profile-mix.svg"]
    assert _git("check-ignore", *written) == written  # what a run writes besides stays out


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("benchmarks.cli", "benchmarks.soak"),
        ("benchmarks.soak.cli", "benchmarks.cli"),
        ("benchmarks.render", "benchmarks.cli"),
        ("benchmarks.common", "benchmarks.cli"),
    ],
)
def test_the_commands_do_not_import_each_other(module: str, absent: str) -> None:
    code = (
        f"import sys, {module}; "
        f"print(sorted(m for m in sys.modules if (m + '.').startswith({absent!r} + '.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
