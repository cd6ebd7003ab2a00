"""The soak report as text (summary.txt, printed at the end) and as one self-contained HTML
page of time series (inline SVG, no scripts)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from benchmarks import plot
from benchmarks.soak.analysis import line_fit

SCHEMA = "tokensvc-soak/1"  # the report.json this reads (soak/cli.py writes it)
GRANT_COLOURS = plot.COLOURS


def _n(value: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if not isinstance(value, int | float) else fmt.format(value)


def _get(record: dict[str, Any] | None, *keys: str) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(mapping.items(), key=lambda kv: -kv[1]))


def _growth_line(name: str, g: dict[str, Any], unit: str, fmt: str = "{:,.1f}") -> str:
    if not g:
        return f"{name}: not measured"
    slope = g.get("slope_per_min")
    return (
        f"{name}: {_n(g.get('baseline'), fmt)} before the load, {_n(g['first_window'], fmt)}"
        f" after the first window, {_n(g['last_window'], fmt)} after the last "
        f"({g['growth']:+,.2f} {unit}); slope {_n(slope, '{:+,.3f}')} {unit}/min over "
        f"{g['fit_windows']} steady windows"
    )


def header(report: dict[str, Any]) -> list[str]:
    c = report["config"]
    mix = " / ".join(f"{g} {w:g}" for g, w in c["mix"].items() if w > 0)
    return [
        f"tokensvc soak: {c['duration_s']:g} s at {c['rate']:g} req/s open loop, mix {mix}; "
        f"windows of {c['window_s']:g} s, the first {c['warmup_s']:g} s warm-up",
        f"{report['target']['description']}",
        f"started {report['started_at']}, commit {report['commit']}, "
        f"{report['machine']['description']}",
    ]


def window_table(windows: list[dict[str, Any]]) -> list[str]:
    rows = [
        f"{'window':>6} {'end':>6} {'req/s':>7} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'RSS MiB':>8} {'fds':>4} {'Redis keys':>10} {'Redis MiB':>9} "
        f"{'refresh_tokens':>14} {'grants':>8}"
    ]
    for w in windows:
        mark = "w" if w["warmup"] else " "
        rows.append(
            f"{w['index'] + 1:>5}{mark} {w['end_s']:>5.0f}s {w['rps']:>7,.0f} "
            f"{w['errors']['total']:>6,} {w['latency_ms']['p50']:>7.2f} "
            f"{w['latency_ms']['p99']:>7.2f} {w['latency_ms']['max']:>7.1f} "
            f"{_n(_get(w, 'service', 'rss_mib'), '{:,.1f}'):>8} "
            f"{_n(_get(w, 'service', 'fds'), '{:,}'):>4} "
            f"{_n(_get(w, 'redis', 'keys'), '{:,}'):>10} "
            f"{_n(_get(w, 'redis', 'used_memory_mib'), '{:,.2f}'):>9} "
            f"{_n(_get(w, 'postgres', 'refresh_tokens', 'rows'), '{:,}'):>14} "
            f"{_n(_get(w, 'postgres', 'grants', 'rows'), '{:,}'):>8}"
        )
    rows.append("(w: warm-up window, left out of slopes and drift)")
    return rows


def findings(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    mem, lat, err, thr, st = (s["memory"], s["latency"], s["errors"], s["throughput"], s["stores"])
    out = [
        _growth_line("service RSS", mem["service_rss_mib"], "MiB"),
        _growth_line("service open fds", mem["service_fds"], "fds", "{:,.0f}"),
    ]
    if lat:
        early, late = lat["early_ms"], lat["late_ms"]
        out.append(
            f"latency: p50 {early['p50']:.2f} -> {late['p50']:.2f} ms "
            f"({_n(lat['p50_drift'], '{:.2f}')}x), p99 {early['p99']:.2f} -> "
            f"{late['p99']:.2f} ms ({_n(lat['p99_drift'], '{:.2f}')}x): the first "
            f"{len(lat['early_windows'])} steady window(s) against the last "
            f"{len(lat['late_windows'])}"
        )
    kinds = {**err["by_error"], **{f"socket {k}": v for k, v in err["socket"].items()}}
    out.append(f"errors: {err['total']:,} ({_counts(kinds)})" if err["total"] else "errors: none")
    if err["starved"]:
        out.append(f"not sent for want of a credential: {_counts(err['starved'])}")
    overall = thr["overall_ms"]
    out.append(
        f"load: {thr['scheduled']:,} requests due, {thr['requests']:,} answered "
        f"({thr['achieved_rps']:,.1f} req/s against {thr['rate_target']:g}); overall p50 "
        f"{overall['p50']:.2f} ms, p99 {overall['p99']:.2f} ms, max {overall['max']:.1f} "
        f"ms; send lag p99 {_n(thr.get('send_lag_p99_ms'), '{:.2f}')} ms"
    )
    codes, chains = thr["codes"], thr["chains"]
    out.append(
        f"credentials: {codes['minted']:,} codes minted during the run (TTL "
        f"{codes['ttl_s']} s; {codes['expired_unsent']:,} expired unsent, "
        f"{codes['mint_failures']:,} failed mints); refresh chains: "
        f"{chains['started']:,} started, {chains['rotations']:,} rotations, "
        f"{chains['broken']:,} broken, {chains['abandoned']:,} abandoned past the cap"
    )
    for table in ("refresh_tokens", "grants"):
        rows, mib = st["postgres"][table]["rows"], st["postgres"][table]["mib"]
        if rows:
            out.append(
                f"Postgres {table}: {_n(rows.get('baseline'), '{:,.0f}')} -> "
                f"{rows['last_window']:,.0f} rows ({_n(rows['slope_per_min'], '{:+,.0f}')}"
                f"/min), {_n(mib.get('baseline'), '{:,.2f}')} -> "
                f"{mib['last_window']:,.2f} MiB ({_n(mib['slope_per_min'], '{:+,.2f}')}"
                " MiB/min)"
            )
    keys, used = st["redis"]["keys"], st["redis"]["used_memory_mib"]
    if keys:
        out.append(
            f"Redis: {_n(keys.get('baseline'), '{:,.0f}')} -> {keys['last_window']:,.0f}"
            f" keys (max {keys['max']:,.0f}), used memory "
            f"{_n(used.get('baseline'), '{:,.2f}')} -> {used['last_window']:,.2f} MiB "
            f"(slope {_n(used['slope_per_min'], '{:+,.3f}')} MiB/min)"
        )
    return out


def text(report: dict[str, Any]) -> str:
    parts = [*header(report), "", *window_table(report["windows"]), "", *findings(report)]
    if report["notes"]:
        parts += ["", *(f"note: {n}" for n in report["notes"])]
    parts += ["", report["summary"]["verdict"]["line"]]
    return "\n".join(parts)


def _points(
    report: dict[str, Any], get: Callable[[dict[str, Any]], Any], steady: bool = False
) -> list[tuple[float, float]]:
    """(minutes, value) at the end of each window that has the value, from the baseline at 0
    (steady: the windows after the warm-up only)."""
    out = []
    if not steady:  # the readings before the load started, at 0
        value = get(report["baseline"])
        if isinstance(value, int | float):
            out.append((0.0, float(value)))
    for w in report["windows"]:
        value = get(w)
        if steady and w["warmup"]:
            continue
        if isinstance(value, int | float):
            out.append((w["end_s"] / 60.0, float(value)))
    return out


def _errors_per_second(w: dict[str, Any]) -> float | None:
    if "errors" not in w:
        return None
    return float(w["errors"]["total"] / max(1e-9, w["end_s"] - w["start_s"]))


def _fit(steady: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The least-squares line through the steady windows' points, drawn across them."""
    fit = line_fit(steady)
    if fit is None:
        return []
    slope, intercept = fit
    return [(x, intercept + slope * x) for x in (steady[0][0], steady[-1][0])]


def page(report: dict[str, Any], summary_text: str) -> str:
    warm = report["config"]["warmup_s"] / 60.0
    marks = [(warm, "warm-up ends")] if warm > 0 else []
    x = "minutes into the soak (end of each window)"

    def chart(title: str, unit: str, series: list[plot.Series], from_zero: bool = True) -> str:
        return plot.line_chart(
            title, x, unit, series, from_zero=from_zero, marks=marks, x_start=0.0
        )

    def line(label: str, colour: str, dashed: bool, *keys: str) -> plot.Series:
        """A series of the value at `keys` in the baseline and each window."""
        return (label, colour, dashed, _points(report, lambda w: _get(w, *keys)))

    def rss_of(w: dict[str, Any]) -> Any:
        return _get(w, "service", "rss_mib")

    charts = [
        chart(
            "service resident memory (RSS, the process tree)",
            "MiB",
            [
                ("RSS", "#1f77b4", False, _points(report, rss_of)),
                ("fit after warm-up", "#d62728", True, _fit(_points(report, rss_of, steady=True))),
            ],
            from_zero=False,
        ),
        chart(
            "latency per window (from the intended send time)",
            "ms",
            [
                line("p50", "#2ca02c", False, "latency_ms", "p50"),
                line("p90", "#ff7f0e", False, "latency_ms", "p90"),
                line("p99", "#d62728", False, "latency_ms", "p99"),
            ],
        ),
        chart(
            "p99 per grant per window",
            "ms",
            [
                line(g, GRANT_COLOURS.get(g, "#8c564b"), False, "by_grant", g, "p99")
                for g in ("client_credentials", "authorization_code", "refresh_token")
            ],
        ),
        chart(
            "throughput and errors per window",
            "requests / s",
            [
                line("answered", "#1f77b4", False, "rps"),
                ("errors / s", "#d62728", False, _points(report, _errors_per_second)),
            ],
        ),
        chart(
            "service open file descriptors and threads",
            "count",
            [
                line("fds", "#9467bd", False, "service", "fds"),
                line("threads", "#8c564b", True, "service", "threads"),
            ],
        ),
        chart(
            "Postgres rows (retired refresh tokens are kept for reuse detection)",
            "rows",
            [
                line("refresh_tokens", "#2ca02c", False, "postgres", "refresh_tokens", "rows"),
                line("grants", "#d62728", False, "postgres", "grants", "rows"),
            ],
        ),
        chart(
            "Postgres size on disk (tables with indexes)",
            "MiB",
            [
                line("refresh_tokens", "#2ca02c", False, "postgres", "refresh_tokens", "mib"),
                line("grants", "#d62728", False, "postgres", "grants", "mib"),
                line("database", "#7f7f7f", True, "postgres", "database_mib"),
            ],
        ),
        chart(
            "Redis used memory",
            "MiB",
            [line("used_memory", "#d62728", False, "redis", "used_memory_mib")],
            from_zero=False,
        ),
        chart(
            "Redis keys (codes, and used-code markers kept 10 minutes)",
            "keys",
            [line("keys", "#d62728", False, "redis", "keys")],
        ),
    ]
    return plot.html_page(
        f"tokensvc soak {report['started_at']}",
        f"<p><b>{html.escape(report['summary']['verdict']['line'])}</b></p>",
        charts,
        f"<pre>{html.escape(summary_text)}</pre>\n"
        "<p>The full data is in report.json next to this file.</p>",
    )
