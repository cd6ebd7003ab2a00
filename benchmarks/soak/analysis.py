"""From the soak's windows to its findings: memory growth (first window against last, and a
least-squares slope per minute over the windows after the warm-up), latency drift (p99 of the
last steady windows against the first, from their merged histograms), errors, what the stores
grew by, and a verdict against thresholds. The verdict is reported, never asserted by a test:
on a shared machine a slope or a ratio is a reading, not a proof."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.histogram import Histogram, latency_ms

DRIFT_WINDOWS = 6  # at most this many steady windows at each end are compared


def line_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line through `points`; None below two
    distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    fit = line_fit(points)
    return None if fit is None else fit[0] * 60.0


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _series(
    windows: Sequence[dict[str, Any]],
    get: Callable[[dict[str, Any]], Any],
) -> list[tuple[float, float]]:
    out = []
    for w in windows:
        value = get(w)
        if isinstance(value, int | float):
            out.append((float(w["end_s"]), float(value)))
    return out


def _growth(
    windows: Sequence[dict[str, Any]],
    steady: Sequence[dict[str, Any]],
    get: Callable[[dict[str, Any]], Any],
    baseline: Any = None,
) -> dict[str, Any]:
    """first/last window values, their difference, min/max and the steady slope per minute."""
    points = _series(windows, get)
    if not points:
        return {}
    values = [v for _, v in points]
    out: dict[str, Any] = {
        "first_window": values[0],
        "last_window": values[-1],
        "growth": _round(values[-1] - values[0]),
        "min": min(values),
        "max": max(values),
        "slope_per_min": _round(slope_per_minute(_series(steady, get)), 4),
        "fit_windows": len(_series(steady, get)),
    }
    if isinstance(baseline, int | float):
        out["baseline"] = baseline
    return out


def _dig(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get


def drift(steady: Sequence[int], hists: Sequence[Histogram]) -> dict[str, Any]:
    """Latency of the last steady windows against the first ones (as many at each end, at
    most DRIFT_WINDOWS and at most a third of them, at least one)."""
    if not steady:
        return {}
    k = max(1, min(DRIFT_WINDOWS, len(steady) // 3))
    early, late = steady[:k], steady[-k:]
    first = latency_ms(Histogram.merged(hists[i] for i in early))
    last = latency_ms(Histogram.merged(hists[i] for i in late))

    def ratio(name: str) -> float | None:
        return _round(last[name] / first[name]) if first[name] > 0 else None

    return {
        "early_windows": list(early),
        "late_windows": list(late),
        "early_ms": first,
        "late_ms": last,
        "p50_drift": ratio("p50"),
        "p99_drift": ratio("p99"),
    }


def summarise(
    windows: Sequence[dict[str, Any]],
    hists: Sequence[Histogram],
    baseline: dict[str, Any],
    load: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    steady_idx = [w["index"] for w in windows if not w["warmup"]]
    steady = [w for w in windows if not w["warmup"]]
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    socket: Counter[str] = Counter()
    starved: Counter[str] = Counter()
    for w in windows:
        errors.update(w["errors"]["by_error"])
        statuses.update(w["errors"]["by_status"])
        socket.update(w["errors"]["socket"])
        starved.update(w["starved"])
    requests = sum(w["requests"] for w in windows)
    seconds = sum(w["end_s"] - w["start_s"] for w in windows)
    stores: dict[str, Any] = {
        "redis": {
            "keys": _growth(
                windows, steady, _dig("redis", "keys"), _dig("redis", "keys")(baseline)
            ),
            "used_memory_mib": _growth(
                windows,
                steady,
                _dig("redis", "used_memory_mib"),
                _dig("redis", "used_memory_mib")(baseline),
            ),
        },
        "postgres": {
            table: {
                "rows": _growth(
                    windows,
                    steady,
                    _dig("postgres", table, "rows"),
                    _dig("postgres", table, "rows")(baseline),
                ),
                "mib": _growth(
                    windows,
                    steady,
                    _dig("postgres", table, "mib"),
                    _dig("postgres", table, "mib")(baseline),
                ),
            }
            for table in ("refresh_tokens", "grants")
        },
    }
    stores["postgres"]["database_mib"] = _growth(
        windows,
        steady,
        _dig("postgres", "database_mib"),
        _dig("postgres", "database_mib")(baseline),
    )
    summary = {
        "memory": {
            "service_rss_mib": _growth(
                windows, steady, _dig("service", "rss_mib"), _dig("service", "rss_mib")(baseline)
            ),
            "service_fds": _growth(
                windows, steady, _dig("service", "fds"), _dig("service", "fds")(baseline)
            ),
            "service_threads": _growth(
                windows, steady, _dig("service", "threads"), _dig("service", "threads")(baseline)
            ),
        },
        "latency": drift(steady_idx, hists),
        "errors": {
            "total": sum(errors.values()) + sum(socket.values()),
            "by_status": dict(statuses),
            "by_error": dict(errors),
            "socket": dict(socket),
            "starved": dict(starved),
        },
        "throughput": {
            "rate_target": config["rate"],
            "requests": requests,
            "achieved_rps": round(requests / seconds, 1) if seconds else 0.0,
            "overall_ms": latency_ms(Histogram.merged(hists)),
            **load,
        },
        "stores": stores,
    }
    summary["verdict"] = verdict(summary, config)
    return summary


def verdict(summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """PASS when the service's RSS slope, the p99 drift and the errors are under their
    limits; INCONCLUSIVE when a reading is missing (too few windows, no service pid)."""
    slope = summary["memory"]["service_rss_mib"].get("slope_per_min")
    p99 = summary["latency"].get("p99_drift")
    errors = summary["errors"]["total"]
    starved = sum(summary["errors"]["starved"].values())
    max_slope, max_drift = config["max_rss_slope_mib_per_min"], config["max_p99_drift"]
    failed, missing, parts = [], [], []
    readings = (  # name, value, limit, what exceeding it means, how it reads
        ("RSS slope", slope, max_slope, "memory growth", "{:+.3f} MiB/min (limit {:g})"),
        ("p99 drift", p99, max_drift, "latency drift", "{:.2f}x (limit {:g}x)"),
    )
    for name, value, limit, failure, shown in readings:
        if value is None:
            missing.append(name)
            parts.append(f"{name} n/a")
            continue
        parts.append(f"{name} {shown.format(value, limit)}")
        if value >= limit:
            failed.append(failure)
    parts.append(f"{errors:,} error{'s' if errors != 1 else ''}")
    if errors:
        failed.append("errors")
    if starved:
        parts.append(f"{starved:,} requests not sent for want of a credential")
        failed.append("load not as asked")
    status = "FAIL" if failed else ("INCONCLUSIVE" if missing else "PASS")
    line = f"verdict: {status} - " + ", ".join(parts)
    if failed:
        line += f" ({', '.join(failed)})"
    return {
        "status": status,
        "line": line,
        "failed": failed,
        "missing": missing,
        "thresholds": {"rss_slope_mib_per_min": max_slope, "p99_drift": max_drift, "errors": 0},
    }
