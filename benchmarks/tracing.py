"""`python -m benchmarks tracing`: what tracing costs at `/token` (README "Tracing"),
measured in rounds that alternate between two services of one stack, so that the drift of a
shared machine (2-3x from hour to hour) falls on both sides of each ratio alike.

    python -m benchmarks tracing                       # 8 pairs of 4 s rounds, 32 connections
    python -m benchmarks tracing --pairs 4 --duration 2 --concurrency 8 --out /tmp/tracing

It spawns the stack of `--spawn` (benchmarks/spawn.py) with a second token service whose
tracing is on at spawn.TRACED_SAMPLER (1% of traces), exporting over OTLP/HTTP to a receiver in
this process, registers the kit's machine client, and runs closed-loop `client_credentials`
rounds against the untraced and the traced service in turn, the order swapped every pair
(ABBA). Reported per pair: req/s of each and their ratio, and the services' CPU per request;
then the median ratio against the target (TARGET), and how many spans were exported. The kit's
`cc_traced` workload measures the same once per run, next to the other workloads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
from contextlib import ExitStack
from typing import Any

from benchmarks import common, cpu, spawn
from benchmarks.common import UsageError
from benchmarks.live import Live
from benchmarks.prepare import StaticPool, client_credentials_line, register_clients
from benchmarks.runner import PhaseResult, Runner

TARGET = 0.90  # issue 16: traced client_credentials >= 0.9x untraced, same run
SIDES = ("off", "on")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks tracing",
        description="client_credentials with tracing off and on (1%% sampler), in "
        "alternating rounds against two services of one spawned stack.",
    )
    p.add_argument("--pairs", type=int, default=8, help="pairs of rounds (8)")
    p.add_argument("--duration", type=int, default=4, help="timed seconds per round (4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed seconds per round (1)")
    p.add_argument("--concurrency", type=int, default=32, help="connections (32)")
    p.add_argument(
        "--out", default=None, help="directory (default benchmarks/results/tracing/<UTC time>/)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return common.run_command("benchmarks tracing", _main, args)


def _main(args: argparse.Namespace) -> int:
    if args.pairs < 1 or args.duration < 1 or args.concurrency < 1 or args.warmup < 0:
        raise UsageError("--pairs, --duration and --concurrency must be >= 1, --warmup >= 0")
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    outdir = common.output_dir(args.out or str(common.RESULTS / "tracing" / stamp), started)
    workdir = outdir / "work"
    live = Live(args.quiet)
    with ExitStack() as stack:
        service_cores, other_cores, note = spawn.plan_cores(None, None)
        live.say("starting Redis, Postgres and two token services (tracing off, on) ...")
        sink = stack.enter_context(spawn.traces_sink())
        st = stack.enter_context(
            spawn.spawn(
                workdir,
                service_cores=service_cores,
                other_cores=other_cores,
                with_floor=False,
                traces_to=sink.url,
            )
        )
        machine, _ = register_clients(st.database_url)
        line = client_credentials_line(machine, {})
        watcher = cpu.Watcher()
        runner = Runner(
            live=live,
            watcher=watcher,
            workdir=workdir,
            engine="python",
            wrk_label=None,
            threads=1,
            processes=max(1, len(other_cores)),
            generator_cores=other_cores,
            batch=1,
        )
        targets = {
            "off": (st.token_url, st.metrics_url, st.service_pid),
            "on": (st.traced_token_url, st.traced_metrics_url, st.traced_service_pid),
        }
        pairs = []
        for n in range(args.pairs):
            order = SIDES if n % 2 == 0 else SIDES[::-1]
            pair: dict[str, dict[str, Any]] = {}
            for side in order:
                url, metrics_url, pid = targets[side]
                watcher.watch("service", pid)
                phase = runner.closed(
                    f"tracing {side}",
                    url,
                    StaticPool("client_credentials", line),
                    args.concurrency,
                    args.warmup,
                    args.duration,
                    metrics_url,
                )
                pair[side] = _round(phase)
            pair["ratio"] = round(pair["on"]["rps"] / max(pair["off"]["rps"], 1e-9), 3)
            pairs.append(pair)
            live.say(
                f"pair {n + 1}/{args.pairs}: off {pair['off']['rps']:,.0f} req/s, "
                f"on {pair['on']['rps']:,.0f} req/s: {pair['ratio']:.3f}"
            )
        spans = sink.spans()
    median = statistics.median(p["ratio"] for p in pairs)
    data = {
        "started_at": common.utc_text(started),
        "commit": common.git_commit(),
        "machine": common.machine(),
        "config": vars(args) | {"out": str(outdir), "sampler": spawn.TRACED_SAMPLER},
        "notes": [note] if note else [],
        "pairs": pairs,
        "median_ratio": round(median, 3),
        "target": {"ratio_at_least": TARGET, "met": median >= TARGET},
        "spans_exported": len(spans),
        "requests_traced": sum(1 for s in spans if s.name == "POST /token"),
    }
    (outdir / "report.json").write_text(json.dumps(data, indent=2))
    text = _table(data)
    (outdir / "summary.txt").write_text(text + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    return 0 if all(p["off"]["errors"] == 0 == p["on"]["errors"] for p in pairs) else 1


def _round(phase: PhaseResult) -> dict[str, Any]:
    o = phase.outcome
    cpu_s = phase.window_usage.seconds("service")
    return {
        "rps": round(o.rate, 1),
        "requests": o.completed,
        "errors": o.completed - o.statuses.get(200, 0),
        "service_cpu_us": round(cpu_s / o.completed * 1e6, 1) if cpu_s and o.completed else None,
    }


def _table(data: dict[str, Any]) -> str:
    lines = [
        f"tracing at /token  {data['started_at']}  commit {data['commit']}",
        f"client_credentials, closed loop, {data['config']['concurrency']} connections, "
        f"{data['config']['duration']} s rounds; tracing on: "
        f"{' '.join(f'{k}={v}' for k, v in data['config']['sampler'].items())}",
        f"{'pair':>4}  {'off req/s':>10}  {'on req/s':>10}  {'on/off':>7}  "
        f"{'off µs CPU':>10}  {'on µs CPU':>10}",
    ]
    for n, p in enumerate(data["pairs"], 1):
        lines.append(
            f"{n:>4}  {p['off']['rps']:>10,.0f}  {p['on']['rps']:>10,.0f}  {p['ratio']:>7.3f}  "
            f"{p['off']['service_cpu_us'] or '-':>10}  {p['on']['service_cpu_us'] or '-':>10}"
        )
    target = data["target"]
    lines.append(
        f"median on/off: {data['median_ratio']:.3f} (target >= {target['ratio_at_least']:.2f}: "
        f"{'met' if target['met'] else 'NOT met'}); {data['spans_exported']} spans exported, "
        f"{data['requests_traced']} /token requests traced"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
