"""The results: a JSON report (schema `tokensvc-bench/1`, described in benchmarks/README.md)
and the plain table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import attribution
from benchmarks.histogram import CURVE_POINTS, latency_ms, to_ms
from benchmarks.peer import grant_of, phase_name
from benchmarks.runner import PhaseResult

SCHEMA = "tokensvc-bench/1"
GRANT_ORDER = ("floor", "client_credentials", "authorization_code", "refresh_token", "mix")
# Closed-loop throughput as a fraction of the floor (issue 18's, replacing issue 5's); open-loop
# p99 at half the closed-loop peak. Against a peer: benchmarks/peer.py, TARGET_VS_PEER.
TARGET_VS_FLOOR = {"client_credentials": 0.45, "authorization_code": 0.25, "refresh_token": 0.25}
BASELINE = "client_credentials"


@dataclass(frozen=True)
class Versus:
    """Workloads that change one thing about `client_credentials` (BASELINE), each measured as
    closed-loop throughput against BASELINE of the same run (`vs_client_credentials`, and its
    target: `target_vs_client_credentials`), in a table of their own: `ratio` names their
    ratio's column, `what` its last column, and `rows` says what each row changes (BASELINE's
    first)."""

    title: str
    ratio: str
    what: str
    rows: dict[str, str]
    targets: dict[str, float]
    footnote: str


CLIENT_AUTHENTICATION = Versus(  # workload identity's: clients without a secret
    title="client authentication, closed loop: against client_credentials with its secret",
    ratio="x secret",
    what="client authentication",
    rows={
        BASELINE: "client secret (client_secret_basic)",
        "cc_federated_jwt": "federated_jwt: one workload token, reused",
        "cc_private_key_jwt": "private_key_jwt: a fresh assertion per request",
    },
    targets={"cc_federated_jwt": 0.80, "cc_private_key_jwt": 0.50},
    footnote="(target: the issue's minimum ratio to client_credentials with a secret; '!' = not "
    "met)",
)
RESOURCES = Versus(  # RFC 8707 and RFC 8693: tokens for a registered API
    title="resources, closed loop: against client_credentials for the issuer",
    ratio="x cc",
    what="the token",
    rows={
        BASELINE: "for the issuer (no resource)",
        "cc_resource": "client_credentials with resource: for the API",
        "token_exchange": "RFC 8693: a subject token exchanged for the API",
    },
    targets={"cc_resource": 0.95, "token_exchange": 0.80},
    footnote="(target: the issue's minimum ratio to client_credentials; '!' = not met)",
)
DPOP = Versus(  # RFC 9449: sender-constrained tokens
    title="DPoP, closed loop: against client_credentials without a proof",
    ratio="x cc",
    what="the request",
    rows={
        BASELINE: "no proof: a Bearer token",
        "cc_dpop": "a fresh ES256 DPoP proof per request: a DPoP-bound token",
    },
    targets={"cc_dpop": 0.60},
    footnote="(target: the minimum ratio to client_credentials without a proof; '!' = not met)",
)
TRACING = Versus(  # OpenTelemetry (README "Tracing")
    title="tracing, closed loop: against client_credentials with tracing off",
    ratio="x off",
    what="the service",
    rows={
        BASELINE: "tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)",
        "cc_traced": "tracing on, 1% of traces sampled, OTLP/HTTP to a receiver",
    },
    targets={"cc_traced": 0.90},
    footnote="(target: the minimum ratio to client_credentials with tracing off; '!' = not met)",
)
REUSE = Versus(  # the opt-in machine-token cache (README "Reusing machine tokens")
    title="reused machine tokens, closed loop: against client_credentials signing each",
    ratio="x cc",
    what="the client",
    rows={
        BASELINE: "a fresh token per request (the default)",
        "cc_reused": "--reuse-access-token: the cached token while half its life is left",
    },
    targets={},
    footnote="(opt-in, never used to meet a target: what the cache saves)",
)
COMPARISONS = (CLIENT_AUTHENTICATION, RESOURCES, DPOP, TRACING, REUSE)
TARGET_VS_CLIENT_CREDENTIALS = {w: t for c in COMPARISONS for w, t in c.targets.items()}
VERSUS_CLIENT_CREDENTIALS = {w for c in COMPARISONS for w in c.rows if w != BASELINE}
# the client-auth comparison's names from before it was generalised
TARGET_VS_SECRET, CLIENT_AUTH = CLIENT_AUTHENTICATION.targets, CLIENT_AUTHENTICATION.rows
TARGET_P99_MS = 25.0
SATURATED = 0.85  # a CPU busy this much of its capacity is the bottleneck


def latency(phase: PhaseResult) -> dict[str, float]:
    hist = phase.outcome.hist
    return {**latency_ms(hist), "mean": to_ms(hist.mean())}


def _utilisations(phase: PhaseResult) -> dict[str, Any]:
    usage = phase.usage
    out: dict[str, Any] = {}
    for name in ("service", "floor", "redis", "postgres"):
        value = usage.utilisation(name)
        if value is not None:
            out[name] = round(value, 3)
    if phase.outcome.generator_cpu is not None and phase.outcome.seconds > 0:
        out["generator"] = round(phase.outcome.generator_cpu / phase.outcome.seconds, 3)
    cores = usage.core_utilisation()
    if cores:
        out["cores"] = {str(k): round(v, 3) for k, v in sorted(cores.items())}
    return out


def judge(phase: PhaseResult, ctx: dict[str, Any], floor_rps: float | None) -> str:
    """Which side limited a closed-loop phase."""
    server = "floor" if phase.name == "floor" else "service"
    cpu = _utilisations(phase)
    cores = cpu.get("cores", {})
    server_cap = 1 if server == "floor" else ctx["server_capacity"]
    gen_cap = ctx["generator_capacity"]
    server_cores = [cores[str(c)] for c in ctx["service_cores"] if str(c) in cores]
    other_cores = [cores[str(c)] for c in ctx["other_cores"] if str(c) in cores]
    who = "floor server" if server == "floor" else "peer" if grant_of(phase.name) else "service"
    parts = []
    if server in cpu and cpu[server] >= SATURATED * server_cap:
        parts.append(
            f"{who} CPU ({cpu[server] / server_cap:.0%} of {server_cap:g} core"
            f"{'s' if server_cap > 1 else ''})"
        )
    elif server_cores and min(server_cores) >= 0.9:
        parts.append(
            f"{who}'s core saturated ({who} process {cpu.get(server, 0):.0%}, the "
            "rest kernel network work or other processes)"
        )
    elif cpu.get("generator", 0) >= SATURATED * gen_cap:
        parts.append(
            f"GENERATOR CPU ({cpu['generator'] / gen_cap:.0%} of its "
            f"{gen_cap:g} core{'s' if gen_cap > 1 else ''})"
        )
    elif other_cores and min(other_cores) >= 0.9:
        parts.append("the shared core (generator + Redis + Postgres) is saturated")
    elif server in cpu:
        parts.append(
            f"waiting (service CPU {cpu[server] / server_cap:.0%}): store round trips / commits"
        )
    else:
        parts.append("the server (its CPU is not visible from here)")
    if phase.name != "floor" and floor_rps and phase.outcome.rate >= SATURATED * floor_rps:
        parts.append("within 15% of the generator ceiling: the figure may be the generator's")
    return "; ".join(parts)


def _versus(
    phase: PhaseResult, ref: PhaseResult, latencies: tuple[str, ...] = ()
) -> dict[str, float | None]:
    """`phase` against `ref` of the same run: the ratio of their rates and of `latencies`."""
    out: dict[str, float | None] = {"rps": round(phase.outcome.rate / ref.outcome.rate, 3)}
    mine, theirs = latency(phase), latency(ref)
    out.update({k: round(mine[k] / theirs[k], 2) if theirs[k] else None for k in latencies})
    return out


def phase_json(
    phase: PhaseResult,
    ctx: dict[str, Any],
    floor: PhaseResult | None,
    signing: dict[str, Any] | None,
    tokens: dict[str, dict[str, int]],
    baseline: PhaseResult | None = None,
    peer: tuple[PhaseResult, dict[str, float] | None] | None = None,
) -> dict[str, Any]:
    """One phase's part of the report; `peer`: the peer's phase of the same grant and the
    peer's targets (tokensvc's minimum ratio to it per grant), for tokensvc's closed loops."""
    o = phase.outcome
    lat = latency(phase)
    data: dict[str, Any] = {
        "name": phase.name,
        "mode": phase.mode,
        "engine": phase.engine,
        "concurrency": phase.concurrency,
        "rate_target": phase.rate,
        "rate_basis": phase.rate_basis or None,
        "warmup_s": phase.warmup_s,
        "duration_s": round(o.seconds, 3),
        "requests": o.completed,
        "ok": o.ok,
        "rps": round(o.rate, 1),
        "latency_ms": lat,
        "percentile_curve": [[p, to_ms(v)] for p, v in o.hist.percentiles(CURVE_POINTS).items()],
        "errors": {
            "total": o.error_count,
            "by_status": {str(k): v for k, v in sorted(o.statuses.items()) if k != 200},
            "by_error": dict(sorted(o.errors.items())),
            "socket": dict(sorted(o.socket.items())),
        },
        "timeline": [
            {
                "t": i + 1,
                "seconds": round(iv.seconds, 3),
                "rps": round(iv.rate, 1),
                "p99_ms": to_ms(iv.hist.percentile(99)),
                "errors": iv.errors,
            }
            for i, iv in enumerate(o.intervals)
        ],
        "cpu": _utilisations(phase),
        "prepared": {
            "lines": phase.prepared,
            "seconds": round(phase.prepare_s, 2),
            "top_ups": phase.top_ups,
            "redone_slices": phase.redone,
        },
        "notes": list(phase.notes),
    }
    if o.generator_cpu is not None and o.completed:
        data["generator_cpu_us_per_request"] = round(o.generator_cpu / o.completed * 1e6, 1)
    if floor is not None and floor.outcome.completed and phase is not floor:
        # latency ratios only between closed loops
        closed = ("p50", "p90", "p99", "p99.9") if phase.mode == "closed" else ()
        data["vs_floor"] = _versus(phase, floor, closed)
    if phase.mode == "closed":
        data["bound"] = judge(phase, ctx, floor.outcome.rate if floor else None)
        goal = TARGET_VS_FLOOR.get(phase.name)
        if goal is not None and "vs_floor" in data:
            data["target"] = {"rps_vs_floor_at_least": goal, "met": data["vs_floor"]["rps"] >= goal}
        goal = TARGET_VS_CLIENT_CREDENTIALS.get(phase.name)
        compared = phase.name in VERSUS_CLIENT_CREDENTIALS
        if compared and baseline is not None and baseline.outcome.completed:
            versus = _versus(phase, baseline, ("p50", "p99"))
            data["vs_client_credentials"] = versus
            if goal is not None:
                data["target_vs_client_credentials"] = {
                    "rps_at_least": goal,
                    "met": (versus["rps"] or 0) >= goal,
                }
        if peer is not None and peer[0].outcome.completed:
            theirs, targets = peer
            data["vs_peer"] = _versus(phase, theirs, ("p50", "p99"))
            goal = (targets or {}).get(phase.name)
            if goal is not None:
                met = (data["vs_peer"]["rps"] or 0) >= goal
                data["target_vs_peer"] = {"rps_at_least": goal, "met": met}
    else:
        lag = o.lag.percentiles((50, 99, 100))
        data["open_loop"] = {
            "scheduled": o.scheduled,
            "achieved_rps": round(o.completed / o.seconds, 1) if o.seconds else 0.0,
            "send_lag_ms": {"p50": to_ms(lag[50]), "p99": to_ms(lag[99]), "max": to_ms(lag[100])},
        }
        behind = lag[99] > 5000 or (phase.rate and o.scheduled < 0.97 * phase.rate * o.seconds)
        data["open_loop"]["generator_kept_up"] = not behind
        targeted = phase.name in TARGET_VS_FLOOR or phase.name in TARGET_VS_CLIENT_CREDENTIALS
        if targeted or phase.name == "mix":
            data["target"] = {"p99_ms_below": TARGET_P99_MS, "met": lat["p99"] < TARGET_P99_MS}
    if phase.name != "floor":
        service = ctx.get("service_measured", False)
        requests = (
            phase.metrics.token_requests
            if phase.metrics and phase.metrics.token_requests
            else o.completed
        )
        # the kit's signing cost is tokensvc's signer: not the peer's
        sign = (
            None
            if grant_of(phase.name)
            else attribution.signing_us(tokens.get(phase.name, {}), signing)
        )
        usage = phase.window_usage
        data["time_per_request_us"] = attribution.breakdown(
            requests,
            usage.seconds("service") if service else None,
            phase.metrics,
            sign,
            usage.seconds("redis"),
            usage.seconds("postgres"),
        )
    return data


def build(
    meta: dict[str, Any],
    phases: list[PhaseResult],
    ctx: dict[str, Any],
    signing: dict[str, Any] | None,
    tokens: dict[str, dict[str, int]],
) -> dict[str, Any]:
    floor = next((p for p in phases if p.name == "floor" and p.mode == "closed"), None)
    baseline = next((p for p in phases if p.name == BASELINE and p.mode == "closed"), None)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        **meta,
        "signing": signing,
        "jwts_per_response": tokens,
    }
    closed = {p.name: p for p in phases if p.mode == "closed"}
    targets = (meta.get("peer") or {}).get("targets")

    def versus_peer(p: PhaseResult) -> tuple[PhaseResult, dict[str, float] | None] | None:
        theirs = closed.get(phase_name(p.name)) if p.mode == "closed" else None
        return None if theirs is None else (theirs, targets)

    out["phases"] = [
        phase_json(p, ctx, floor, signing, tokens, baseline, versus_peer(p)) for p in phases
    ]
    out["floor"] = next((p for p in out["phases"] if p["name"] == "floor"), None)
    out["generator"] = ceiling(floor, ctx)
    return out


def ceiling(floor: PhaseResult | None, ctx: dict[str, Any]) -> dict[str, Any] | None:
    """What the generator can do, from the floor run of the same report."""
    if floor is None or not floor.outcome.completed:
        return None
    o = floor.outcome
    cpu = _utilisations(floor)
    out: dict[str, Any] = {
        "floor_rps": round(o.rate, 1),
        "floor_server_cpu": cpu.get("floor"),
        "generator_cpu": cpu.get("generator"),
    }
    gen_us = o.generator_cpu / o.completed * 1e6 if o.generator_cpu and o.completed else None
    if gen_us:
        out["generator_cpu_us_per_request"] = round(gen_us, 1)
        out["generator_capacity_rps"] = round(ctx["generator_capacity"] / gen_us * 1e6)
    floor_busy = cpu.get("floor")
    if floor_busy is not None and floor_busy >= SATURATED * ctx["server_capacity"]:
        out["limited_by"] = "floor server"
        out["statement"] = (
            f"The floor server was CPU-bound ({floor_busy:.0%} of a core): "
            f"{o.rate:,.0f} req/s is the server's limit, and the generator "
            "can send at least that much."
        )
    elif cpu.get("generator", 0) >= SATURATED * ctx["generator_capacity"]:
        out["limited_by"] = "generator"
        out["statement"] = (
            f"The GENERATOR was the bottleneck of the floor run (floor server "
            f"at {floor_busy or 0:.0%}): {o.rate:,.0f} req/s is the "
            "generator's ceiling, and ratios to the floor are understated."
        )
    else:
        out["limited_by"] = "unclear"
        out["statement"] = (
            f"Neither the floor server ({floor_busy or 0:.0%}) nor the "
            f"generator ({cpu.get('generator', 0):.0%}) was CPU-bound: "
            "network or scheduling limited the floor run."
        )
    return out


# --------------------------------------------------------------------------- the table


def _f(value: Any, fmt: str = "{:,.1f}", none: str = "-") -> str:
    return none if value is None else fmt.format(value)


def _row(
    p: dict[str, Any], ratio: float | None, width: int, mark: str, cells: list[str], tail: str
) -> str:
    """A closed-loop row: name, req/s, a ratio (`width` wide) and its target, `cells`, `tail`."""
    head = f"{p['name']:20} {p['rps']:>9,.0f} {_f(ratio, '{:.2f}'):>{width}} {mark:>7}"
    return " ".join([head, *cells]) + f"  {tail}"


def _mark(target: dict[str, Any] | None, goal: str) -> str:
    """A target's column: its ratio, '!' when not met; '-' without one."""
    if not target:
        return "-"
    return f"{target[goal]:.2f}{'' if target['met'] else '!'}"


def _versus_table(versus: Versus, closed: list[dict[str, Any]], add: Callable[[str], None]) -> None:
    """`versus`'s workloads against BASELINE of the same run (nothing without them)."""
    rows = [p for p in closed if p["name"] in versus.rows and "vs_client_credentials" in p]
    baseline = next((p for p in closed if p["name"] == BASELINE), None)
    if not rows or baseline is None:
        return
    add("")
    add(versus.title)
    add(
        f"{'workload':20} {'req/s':>9} {versus.ratio:>9} {'target':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'x p50':>6} {'x p99':>6}  {versus.what}"
    )
    ones = {"rps": 1.0, "p50": 1.0, "p99": 1.0}
    for p in [baseline, *rows]:
        vs = p.get("vs_client_credentials", ones)
        mark = _mark(p.get("target_vs_client_credentials"), "rps_at_least")
        lat = p["latency_ms"]
        cells = [f"{lat['p50']:>8.2f}", f"{lat['p99']:>8.2f}"]
        cells += [f"{_f(vs[k], '{:.2f}'):>6}" for k in ("p50", "p99")]
        add(_row(p, vs["rps"], 9, mark, cells, versus.rows[p["name"]]))
    add(versus.footnote)


def _peer_table(
    peer: dict[str, Any] | None, closed: list[dict[str, Any]], add: Callable[[str], None]
) -> None:
    """tokensvc against the peer of the same run, grant by grant (nothing without one)."""
    rows = [p for p in closed if "vs_peer" in p]
    if peer is None or not rows:
        return
    theirs = {p["name"]: p for p in closed}
    add("")
    add(f"against the peer, closed loop, same core and concurrency: {peer['label']}")
    add(
        f"{'grant':20} {'tokensvc':>9} {'peer':>9} {'x peer':>7} {'target':>7} "
        f"{'p50 ms':>8} {'peer p50':>9} {'p99 ms':>8} {'peer p99':>9}"
    )
    for p in rows:
        other = theirs[phase_name(p["name"])]
        mark = _mark(p.get("target_vs_peer"), "rps_at_least")
        ours, their = p["latency_ms"], other["latency_ms"]
        add(
            f"{p['name']:20} {p['rps']:>9,.0f} {other['rps']:>9,.0f} "
            f"{p['vs_peer']['rps']:>7.2f} {mark:>7} {ours['p50']:>8.2f} {their['p50']:>9.2f} "
            f"{ours['p99']:>8.2f} {their['p99']:>9.2f}"
        )
    add("(x peer: tokensvc's req/s over the peer's; target: the issue's minimum; '!' = not met)")


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    meta = report
    add(f"tokensvc /token benchmark  {meta['started_at']}  commit {meta['commit']}")
    add(f"machine: {meta['machine']['description']}")
    add(f"target: {meta['target']['description']}")
    add(f"engines: closed loop {meta['engines']['closed']}; open loop {meta['engines']['open']}")
    closed = [p for p in report["phases"] if p["mode"] == "closed"]
    opened = [p for p in report["phases"] if p["mode"] == "open"]
    if closed:
        add("")
        add(
            f"closed loop, {closed[0]['concurrency']} connections, "
            f"{meta['config']['duration_s']} s per workload after {meta['config']['warmup_s']}"
            " s warmup"
        )
        add(
            f"{'workload':20} {'req/s':>9} {'x floor':>8} {'target':>7} {'p50 ms':>8} "
            f"{'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}  bound"
        )
        for p in closed:
            vs = p.get("vs_floor", {}).get("rps") if p["name"] != "floor" else 1.0
            mark = _mark(p.get("target"), "rps_vs_floor_at_least")
            lat = p["latency_ms"]
            cells = [f"{lat[k]:>8.2f}" for k in ("p50", "p90", "p99")]
            cells += [f"{lat['p99.9']:>9.2f}", f"{p['errors']['total']:>7}"]
            add(_row(p, vs, 8, mark, cells, p.get("bound", "")))
        add("(target: the issue's minimum ratio to the floor; '!' = not met)")
        for versus in COMPARISONS:
            _versus_table(versus, closed, add)
        _peer_table(report.get("peer"), closed, add)
    if opened:
        add("")
        add(
            f"open loop (latency from the intended send time), {meta['config']['duration_s']}"
            " s per workload"
        )
        add(
            f"{'workload':20} {'rate':>9} {'achieved':>9} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'p99.9 ms':>9} {'lag p99':>8} {'errors':>7}  p99 < 25 ms"
        )
        for p in opened:
            lat = p["latency_ms"]
            ol = p["open_loop"]
            target = p.get("target")
            verdict = "-" if not target else ("yes" if target["met"] else "NO")
            if not ol["generator_kept_up"]:
                verdict += " (generator fell behind)"
            add(
                f"{p['name']:20} {p['rate_target']:>9,.0f} {ol['achieved_rps']:>9,.0f} "
                f"{lat['p50']:>8.2f} {lat['p90']:>8.2f} {lat['p99']:>8.2f} "
                f"{lat['p99.9']:>9.2f} {ol['send_lag_ms']['p99']:>8.2f} "
                f"{p['errors']['total']:>7}  {verdict}"
            )
    timed = [p for p in report["phases"] if "time_per_request_us" in p]
    if timed:
        add("")
        sign = report.get("signing") or {}
        add(
            "where the time goes, µs per request (service-side; waits are wall time around the"
            " store call)"
        )
        if sign.get("access_token_us"):
            add(
                f"  signing: {sign['access_token_us']} µs per access token, "
                f"{sign['id_token_us']} µs per ID token ({sign['method']})"
            )
        add(
            f"{'workload':20} {'mode':6} {'svc CPU':>8} {'signing':>8} {'other':>8} "
            f"{'Redis':>8} {'Postgres':>9} {'Redis CPU':>10} {'PG CPU':>8} {'gen CPU':>8} "
            f"{'svc ms':>7}"
        )
        for p in timed:
            t = p["time_per_request_us"]
            add(
                f"{p['name']:20} {p['mode']:6} {_f(t['service_cpu_us']):>8} "
                f"{_f(t['signing_us']):>8} {_f(t.get('other_cpu_us')):>8} "
                f"{_f(t['redis_wait_us']):>8} {_f(t['postgres_wait_us']):>9} "
                f"{_f(t['redis_cpu_us']):>10} {_f(t['postgres_cpu_us']):>8} "
                f"{_f(p.get('generator_cpu_us_per_request')):>8} "
                f"{_f(t['server_latency_ms'], '{:.2f}'):>7}"
            )
        add("(svc ms: the service's own mean time per /token request, from its histogram)")
        commits = [
            f"{p['name']} {p['mode']} {p['time_per_request_us']['postgres_commits_per_request']}"
            for p in timed
            if "postgres_commits_per_request" in p["time_per_request_us"]
        ]
        if commits:  # tokensvc_store_batches_total: one durable commit per batch of writes
            add(f"Postgres commits per request (batched writes): {', '.join(commits)}")
    errors = [
        (p, k, v)
        for p in report["phases"]
        for k, v in list(p["errors"]["by_error"].items()) + list(p["errors"]["socket"].items())
    ]
    add("")
    if errors:
        add("errors:")
        for p, key, count in errors:
            add(f"  {p['name']} {p['mode']}: {count:,} x {key}")
    else:
        add("errors: none")
    gen = report.get("generator")
    if gen:
        add("")
        extra = ""
        if gen.get("generator_cpu_us_per_request"):
            extra = (
                f" The generator spent {gen['generator_cpu_us_per_request']} µs CPU per "
                f"request: about {gen['generator_capacity_rps']:,} req/s on its "
                f"core(s)."
            )
        add(f"generator ceiling: {gen['statement']}{extra}")
    notes = [f"{p['name']} {p['mode']}: {n}" for p in report["phases"] for n in p["notes"]]
    notes += report.get("notes", [])
    if report.get("profiles"):
        graphs = [f for f in report["profiles"] if not f.endswith(".txt")]
        texts = [f for f in report["profiles"] if f.endswith(".txt")]
        note = f"py-spy flame graphs of the service: {', '.join(graphs)}"
        notes.append(
            note + (f"; as text (committed with the run): {', '.join(texts)}" if texts else "")
        )
    if notes:
        add("")
        add("notes:")
        lines.extend(f"  {n}" for n in notes)
    return "\n".join(lines)
