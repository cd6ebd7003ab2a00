"""The report as one self-contained HTML page with inline SVG charts (no scripts, no fonts,
nothing fetched): latency percentiles per workload (closed and open loop), throughput and p99
over time, throughput as a fraction of the floor, and where each request's time goes."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

COLOURS = {
    "floor": "#7f7f7f",
    "client_credentials": "#1f77b4",
    "authorization_code": "#d62728",
    "refresh_token": "#2ca02c",
    "mix": "#9467bd",
    "cc_federated_jwt": "#17becf",
    "cc_private_key_jwt": "#bcbd22",
    "cc_resource": "#e377c2",
    "token_exchange": "#c49c94",
    "cc_dpop": "#ff7f0e",
    "cc_traced": "#aec7e8",
}
W, H = 780, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 210, 34, 44
NINES = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def _colour(name: str) -> str:
    return COLOURS.get(name, "#8c564b")


def _nines(p: float) -> float:
    """A percentile on the "nines" axis: 0 -> 0, 90 -> 1, 99 -> 2, 99.9 -> 3 ..."""
    return math.log10(1.0 / max(1e-5, 1.0 - p / 100.0))


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exp in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**exp
            if low <= v <= high:
                ticks.append(v)
    return ticks


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _frame(
    title: str,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[tuple[float, str]],
    x_label: str,
    y_label: str,
    xmap: Callable[[float], float],
    ymap: Callable[[float], float],
) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP
    out.append(
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>'
    )
    for value, label in x_ticks:
        x = xmap(value)
        out.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y0}" stroke="#eee"/>')
        out.append(
            f'<text x="{x:.1f}" y="{y0 + 15}" text-anchor="middle">{html.escape(label)}</text>'
        )
    for value, label in y_ticks:
        y = ymap(value)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(label)}</text>'
        )
    out.append(
        f'<text x="{(x0 + x1) / 2}" y="{H - 8}" text-anchor="middle">{html.escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(y0 + y1) / 2})">{html.escape(y_label)}</text>'
    )
    return out


def _legend(entries: Sequence[tuple[str, str, bool]]) -> list[str]:
    out = []
    for i, (label, colour, dashed) in enumerate(entries):
        y = TOP + 10 + i * 18
        x = W - RIGHT + 12
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x + 28}" y="{y + 4}">{html.escape(label)}</text>')
    return out


def percentile_chart(phases: Sequence[dict[str, Any]], title: str) -> str:
    curves = [
        (p, [(pt, ms) for pt, ms in p["percentile_curve"] if pt < 100 and ms > 0]) for p in phases
    ]
    curves = [(p, c) for p, c in curves if c]
    if not curves:
        return ""
    values = [ms for _, c in curves for _, ms in c]
    low, high = min(values) * 0.8, max(values) * 1.25
    xmax = _nines(99.999)

    def xmap(p: float) -> float:
        return LEFT + _nines(p) / xmax * (W - RIGHT - LEFT)

    def ymap(ms: float) -> float:
        frac = (math.log10(ms) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return H - BOTTOM - frac * (H - BOTTOM - TOP)

    out = _frame(
        title,
        [(p, f"p{p:g}" if p else "p0") for p in NINES],
        [(v, _fmt(v)) for v in _log_ticks(low, high)],
        "percentile",
        "latency (ms, log scale)",
        xmap,
        ymap,
    )
    legend = []
    for phase, curve in curves:
        colour = _colour(phase["name"])
        dashed = phase["mode"] == "open"
        points = " ".join(f"{xmap(p):.1f},{ymap(ms):.1f}" for p, ms in curve)
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        legend.append((phase["name"], colour, dashed))
    out += _legend(legend)
    out.append("</svg>")
    return "\n".join(out)


def timeline_chart(phases: Sequence[dict[str, Any]], key: str, title: str, unit: str) -> str:
    series = [
        (p, [(i + 1, t[key]) for i, t in enumerate(p["timeline"])]) for p in phases if p["timeline"]
    ]
    if not series:
        return ""
    xmax = max(len(s) for _, s in series)
    ymax = max(v for _, s in series for _, v in s) * 1.15 or 1.0
    step = 10 ** math.floor(math.log10(ymax)) if ymax > 0 else 1
    if ymax / step < 3:
        step /= 2

    def xmap(x: float) -> float:
        return LEFT + (x - 1) / max(1, xmax - 1) * (W - RIGHT - LEFT)

    def ymap(y: float) -> float:
        return H - BOTTOM - y / ymax * (H - BOTTOM - TOP)

    y_ticks = [(i * step, _fmt(i * step)) for i in range(int(ymax / step) + 1)]
    x_ticks = [(x, str(x)) for x in range(1, xmax + 1) if xmax <= 20 or x % 5 == 0]
    out = _frame(title, x_ticks, y_ticks, "second of the timed run", unit, xmap, ymap)
    legend = []
    for phase, points in series:
        colour = _colour(phase["name"])
        dashed = phase["mode"] == "open"
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        path = " ".join(f"{xmap(x):.1f},{ymap(y):.1f}" for x, y in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        legend.append((f"{phase['name']} ({phase['mode']})", colour, dashed))
    out += _legend(legend)
    out.append("</svg>")
    return "\n".join(out)


Series = tuple[str, str, bool, Sequence[tuple[float, float]]]  # label, colour, dashed, (x, y)


def _nice_step(span: float) -> float:
    step = 10 ** math.floor(math.log10(span)) if span > 0 else 1.0
    while span / step < 3:
        step /= 2
    return step


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    *,
    from_zero: bool = True,
    marks: Sequence[tuple[float, str]] = (),
    x_start: float | None = None,
) -> str:
    """Lines over a linear x axis (the soak's time series). Without `from_zero` the y axis
    spans the data only, so a small drift on a large value stays visible. `marks` are
    labelled vertical lines (e.g. the end of the warm-up); `x_start` fixes the axis' start."""
    series = [s for s in series if s[3]]
    if not series:
        return ""
    xs = [x for *_, pts in series for x, _ in pts] + [x for x, _ in marks]
    ys = [y for *_, pts in series for _, y in pts]
    x_lo, x_hi = (min(xs) if x_start is None else x_start), max(xs)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_lo = 0.0 if from_zero else min(ys)
    y_hi = max(ys)
    pad = (y_hi - y_lo) * 0.1 or abs(y_hi) * 0.05 or 1.0
    y_hi += pad
    if not from_zero:
        y_lo -= pad
    y_step, x_step = _nice_step(y_hi - y_lo), _nice_step(x_hi - x_lo)

    def xmap(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * (W - RIGHT - LEFT)

    def ymap(y: float) -> float:
        return H - BOTTOM - (y - y_lo) / (y_hi - y_lo) * (H - BOTTOM - TOP)

    y_ticks = [
        (v, _fmt(round(v, 6)))
        for v in (y_step * i for i in range(math.ceil(y_lo / y_step), int(y_hi / y_step) + 1))
    ]
    x_ticks = [
        (v, _fmt(round(v, 6)))
        for v in (x_step * i for i in range(math.ceil(x_lo / x_step), int(x_hi / x_step) + 1))
    ]
    out = _frame(title, x_ticks, y_ticks, x_label, y_label, xmap, ymap)
    for x, label in marks:
        out.append(
            f'<line x1="{xmap(x):.1f}" y1="{TOP}" x2="{xmap(x):.1f}" '
            f'y2="{H - BOTTOM}" stroke="#999" stroke-dasharray="2 3"/>'
        )
        out.append(
            f'<text x="{xmap(x) + 3:.1f}" y="{TOP + 12}" fill="#666">{html.escape(label)}</text>'
        )
    for _, colour, dashed, points in series:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        path = " ".join(f"{xmap(x):.1f},{ymap(y):.1f}" for x, y in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
    out += _legend([(label, colour, dashed) for label, colour, dashed, _ in series])
    out.append("</svg>")
    return "\n".join(out)


def ratio_chart(
    phases: Sequence[dict[str, Any]],
    versus: str = "vs_floor",
    goal: tuple[str, str] = ("target", "rps_vs_floor_at_least"),
    of: str = "the floor",
) -> str:
    """Closed-loop throughput as a fraction of `of` (each phase's `versus`), with the targets
    (`goal`: the phase's key for its target and the target's key for the ratio)."""
    bars = [
        (p["name"], p[versus]["rps"], (p.get(goal[0]) or {}).get(goal[1]))
        for p in phases
        if p["mode"] == "closed" and versus in p
    ]
    if not bars:
        return ""
    ymax = max(1.0, *(b[1] for b in bars)) * 1.1
    height = 40 + 30 * len(bars)
    width = W
    scale = (width - 260) / ymax
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        '<text x="10" y="18" font-size="13" font-weight="bold">closed-loop throughput as a '
        f"fraction of {html.escape(of)} (| = target)</text>",
    ]
    for i, (name, ratio, target) in enumerate(bars):
        y = 32 + i * 30
        out.append(f'<text x="10" y="{y + 14}">{html.escape(name)}</text>')
        out.append(
            f'<rect x="160" y="{y}" width="{ratio * scale:.1f}" height="20" '
            f'fill="{_colour(name)}"/>'
        )
        out.append(f'<text x="{166 + ratio * scale:.1f}" y="{y + 14}">{ratio:.2f}</text>')
        if target:
            x = 160 + target * scale
            out.append(
                f'<line x1="{x:.1f}" y1="{y - 3}" x2="{x:.1f}" y2="{y + 23}" '
                'stroke="black" stroke-width="2"/>'
            )
    out.append("</svg>")
    return "\n".join(out)


PARTS = (
    ("signing_us", "signing (CPU)", "#ff7f0e"),
    ("other_cpu_us", "other service CPU", "#1f77b4"),
    ("redis_wait_us", "Redis wait", "#d62728"),
    ("postgres_wait_us", "Postgres wait", "#2ca02c"),
)


def time_chart(phases: Sequence[dict[str, Any]]) -> str:
    rows = [
        p
        for p in phases
        if p.get("time_per_request_us")
        and p["time_per_request_us"].get("service_cpu_us") is not None
    ]
    if not rows:
        return ""
    totals = [sum((p["time_per_request_us"].get(k) or 0) for k, _, _ in PARTS) for p in rows]
    xmax = max(totals) * 1.1 or 1.0
    height = 70 + 28 * len(rows)
    scale = (W - 300) / xmax
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        '<text x="10" y="18" font-size="13" font-weight="bold">where a request\'s time goes '
        "(µs, service side)</text>",
    ]
    for i, p in enumerate(rows):
        y = 32 + i * 28
        t = p["time_per_request_us"]
        out.append(f'<text x="10" y="{y + 13}">{html.escape(p["name"])} ({p["mode"]})</text>')
        x = 200.0
        for key, _, colour in PARTS:
            v = t.get(key) or 0
            if v > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{v * scale:.1f}" height="18" '
                    f'fill="{colour}"><title>{key}: {v} µs</title></rect>'
                )
                x += v * scale
        total = sum((t.get(k) or 0) for k, _, _ in PARTS)
        out.append(f'<text x="{x + 6:.1f}" y="{y + 13}">{total:,.0f} µs</text>')
    y = 40 + 28 * len(rows)
    for j, (_, label, colour) in enumerate(PARTS):
        out.append(f'<rect x="{10 + j * 150}" y="{y}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{26 + j * 150}" y="{y + 10}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def page(report: dict[str, Any], table_text: str) -> str:
    phases = report["phases"]
    closed = [p for p in phases if p["mode"] == "closed"]
    opened = [p for p in phases if p["mode"] == "open"]
    charts = [
        percentile_chart(closed, "latency by percentile, closed loop"),
        percentile_chart(
            opened + [p for p in closed if p["name"] == "floor"],
            "latency by percentile, open loop (from the intended send time)",
        ),
        ratio_chart(phases),
        ratio_chart(
            phases,
            "vs_client_credentials",
            ("target_vs_client_credentials", "rps_at_least"),
            "client_credentials of the same run",
        ),
        ratio_chart(
            phases,
            "vs_peer",
            ("target_vs_peer", "rps_at_least"),
            (report.get("peer") or {}).get("label", "the peer"),
        ),
        timeline_chart(closed, "rps", "throughput per second, closed loop", "requests / s"),
        timeline_chart(phases, "p99_ms", "p99 per second", "ms"),
        time_chart([p for p in phases if p["mode"] == "open"] or closed),
    ]
    return html_page(
        f"tokensvc benchmark {report['started_at']}",
        f"<pre>{html.escape(table_text)}</pre>",
        charts,
        "<p>Solid lines: closed loop; dashed: open loop. The full data is in report.json next to "
        "this file.</p>",
    )


def html_page(title: str, head: str, charts: list[str | None], foot: str) -> str:
    """A self-contained page (inline SVG, no script): `head`, the charts, `foot`."""
    body = "\n".join(f"<figure>{c}</figure>" for c in charts if c)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }}
figure {{ margin: 1.5em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{head}
{body}
{foot}
</body></html>
"""
