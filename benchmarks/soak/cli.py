"""`python -m benchmarks soak`: mixed grants at a fixed rate for a long time (10 minutes by
default), read in windows, to show what a load test of seconds cannot: memory that grows,
latency that drifts, stores that fill up. See benchmarks/README.md ("Soak").

    python -m benchmarks soak --spawn                     # 10 minutes, 500 req/s, the mix
    python -m benchmarks soak --spawn --duration 2m --window 5 --warmup 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import common, cpu, spawn
from benchmarks.common import UsageError
from benchmarks.histogram import Histogram, latency_ms
from benchmarks.live import Live
from benchmarks.prepare import register_clients
from benchmarks.soak import analysis, load, probes, render
from benchmarks.soak.render import SCHEMA

CODE_TTL = 60  # the product's default: codes are minted as the soak goes, not up front
READY_TIMEOUT = 180.0  # seeding the refresh chains
LATE = 60.0  # how long after its due time a window may arrive


def _seconds(text: str, flag: str) -> float:
    """ "600", "600s", "10m", "1h" -> seconds."""
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise UsageError(
            f"{flag}: expected seconds, or a number with s/m/h, got {text!r}"
        ) from None
    if value < 0:
        raise UsageError(f"{flag} must not be negative")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks soak",
        description="A long open-loop run of mixed grants, sampled in windows: service "
        "memory and fds, latency per window, store growth, and a verdict.",
    )
    where = p.add_argument_group("target (one of)")
    where.add_argument(
        "--spawn", action="store_true", help="start Redis, Postgres and tokensvc here (throwaway)"
    )
    where.add_argument("--target", metavar="URL", help="a tokensvc /token URL")
    load_ = p.add_argument_group("load")
    load_.add_argument(
        "--duration",
        default="10m",
        help="how long: seconds, or with s/m/h (10m); rounded to whole windows",
    )
    load_.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="requests/s, open loop (500: a fraction of a 2-core machine's peak)",
    )
    load_.add_argument("--window", default="10", help="seconds per sample window (10)")
    load_.add_argument(
        "--warmup",
        default="60",
        help="seconds at the start left out of slopes and drift (60; windows ending by then)",
    )
    load_.add_argument(
        "--mix", default=common.DEFAULT_MIX, help=f"weights of the grants ({common.DEFAULT_MIX})"
    )
    load_.add_argument(
        "--chains",
        type=int,
        default=1000,
        help="refresh-token chains kept rotating (1000); beyond, the longest idle is abandoned",
    )
    load_.add_argument("--max-connections", type=int, default=64, help="connections at most (64)")
    verdict = p.add_argument_group("verdict (reported, never a test assertion)")
    verdict.add_argument(
        "--max-rss-slope",
        type=float,
        default=1.0,
        help="MiB per minute of service RSS growth after the warm-up (1.0)",
    )
    verdict.add_argument(
        "--max-p99-drift", type=float, default=2.0, help="late p99 / early p99 (2.0)"
    )
    spawned = p.add_argument_group("--spawn")
    common.add_cores_options(
        spawned, "cores for tokensvc (default: the first)", "cores for everything else"
    )
    common.add_postgres_url(spawned)
    target = p.add_argument_group("--target")
    target.add_argument("--internal-url", help="the deployment's internal listener (codes)")
    common.add_internal_token(target)
    target.add_argument(
        "--database-url",
        help="its database: bench clients are registered there and the tables' growth read",
    )
    target.add_argument("--service-pid", type=int, help="its pid, when local (memory, fds)")
    both = p.add_argument_group("both")
    both.add_argument(
        "--redis-url",
        help="the Redis the service uses (--spawn: instead of a "
        "throwaway one; --target: to read its memory and keys)",
    )
    common.add_output_options(p, "benchmarks/results/<time>-soak/")
    return p


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: stop, write what was measured, stop everything


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    return common.run_command("benchmarks soak", _main, args)


class Config:
    """The options, checked, in the report's terms."""

    def __init__(self, args: argparse.Namespace) -> None:
        if bool(args.spawn) == bool(args.target):
            raise UsageError("give exactly one of --spawn or --target URL")
        self.window = _seconds(args.window, "--window")
        if self.window < 1:
            raise UsageError("--window must be at least 1 (second)")
        self.windows = max(1, round(_seconds(args.duration, "--duration") / self.window))
        self.duration = self.windows * self.window
        self.warmup = _seconds(args.warmup, "--warmup")
        if self.warmup >= self.duration:
            raise UsageError("--warmup must be shorter than --duration")
        if args.rate <= 0 or args.chains < 1 or args.max_connections < 1 or args.workers < 1:
            raise UsageError("--rate, --chains, --max-connections and --workers must be positive")
        self.weights = common.mix_weights(args.mix)
        if args.target and not (args.internal_url and args.internal_token and args.database_url):
            raise UsageError(
                "--target needs --internal-url, --internal-token (codes) and "
                "--database-url (clients, table growth)"
            )

    def report(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "window_s": self.window,
            "warmup_s": self.warmup,
            "rate": args.rate,
            "mix": self.weights,
            "chains": args.chains,
            "max_connections": args.max_connections,
            "code_lead_s": 3.0,
            "workers": args.workers if args.spawn else None,
            "max_rss_slope_mib_per_min": args.max_rss_slope,
            "max_p99_drift": args.max_p99_drift,
        }


def _main(args: argparse.Namespace) -> int:
    config = Config(args)
    started = dt.datetime.now(dt.UTC)
    commit = common.git_commit()  # what runs; HEAD may move while a long soak goes on
    outdir = common.output_dir(args.out, started, "-soak")
    workdir = outdir / "work"
    live = Live(args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)
    notes: list[str] = []
    background = common.note_background(notes, live)

    with ExitStack() as stack:
        service_pid, redis_url, database_url, target, cores = _stack(args, stack, workdir, live)
        machine_client, web_client = register_clients(database_url)
        plan = load.LoadPlan(
            token_url=target["url"],
            internal_url=target.pop("internal_url"),
            internal_token=target.pop("internal_token"),
            machine=machine_client,
            web=web_client,
            weights=config.weights,
            rate=args.rate,
            duration=config.duration,
            window=config.window,
            max_connections=args.max_connections,
            chains=args.chains,
            cores=tuple(cores),
        )
        stores = probes.Stores(redis_url, database_url)
        runner = stack.enter_context(asyncio.Runner())
        stack.callback(lambda: runner.run(stores.close()))
        if service_pid is None:
            notes.append("no service pid (--service-pid): memory and fds were not read")
        session = Session(plan, config, service_pid, stores, runner, live)
        interrupted, failure = False, ""
        try:
            session.run(stack)
        except KeyboardInterrupt:
            interrupted = True
            notes.append(
                f"interrupted after {len(session.windows)} of {config.windows} "
                "windows: the report covers those"
            )
        except RuntimeError as exc:  # the load process failed: report what was measured
            if not session.windows:
                raise
            failure = " ".join(str(exc).split())[:1000]
            notes.append(
                f"the soak stopped early after {len(session.windows)} of "
                f"{config.windows} windows: {failure}"
            )
        notes += [f"{store}: {problem}" for store, problem in stores.problems.items()]
    if not session.windows:
        raise KeyboardInterrupt

    report = _report(args, config, started, commit, target, session, notes, background)
    summary_text = render.text(report)
    shutil.rmtree(workdir, ignore_errors=True)
    common.write_report(outdir, report, summary_text, render.page(report, summary_text))
    if failure:
        print(f"benchmarks soak: {failure}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0


def _stack(
    args: argparse.Namespace,
    stack: ExitStack,
    workdir: Path,
    live: Live,
) -> tuple[int | None, str | None, str, dict[str, Any], list[int]]:
    """(service pid, Redis URL, database URL, target facts, generator cores)."""
    if not args.spawn:
        return (
            args.service_pid,
            args.redis_url,
            args.database_url,
            {
                "description": f"{args.target} (not spawned)",
                "url": args.target,
                "spawned": False,
                "internal_url": args.internal_url,
                "internal_token": args.internal_token,
            },
            [],
        )
    service_cores, other_cores, _ = spawn.plan_cores(args.service_cores, args.generator_cores)
    live.say("starting Redis, Postgres and tokensvc ...")
    st = stack.enter_context(
        spawn.spawn(
            workdir,
            workers=args.workers,
            service_cores=service_cores,
            other_cores=other_cores,
            redis_url=args.redis_url,
            postgres_url=args.postgres_url,
            with_floor=False,
            code_ttl=CODE_TTL,
        )
    )
    desc = (
        f"tokensvc spawned here ({st.workers} worker{'s' if st.workers > 1 else ''} on core "
        f"{cpu.describe_cores(service_cores)}; the load, Redis and Postgres on core "
        f"{cpu.describe_cores(other_cores)}; code TTL {CODE_TTL} s; ES256; JSON request logs "
        "to /dev/null)"
    )
    if args.redis_url or args.postgres_url:
        desc += "; Redis/Postgres given on the command line (shared, not pinned)"
    return (
        st.service_pid,
        st.redis_url,
        st.database_url,
        {
            "description": desc,
            "url": st.token_url,
            "spawned": True,
            "workers": st.workers,
            "service_cores": service_cores,
            "generator_cores": other_cores,
            "internal_url": st.internal_url,
            "internal_token": st.internal_token,
        },
        other_cores,
    )


class Session:
    """The load process and the readings taken at the end of each of its windows."""

    def __init__(
        self,
        plan: load.LoadPlan,
        config: Config,
        service_pid: int | None,
        stores: probes.Stores,
        runner: asyncio.Runner,
        live: Live,
    ) -> None:
        self.plan = plan
        self.config = config
        self.service_pid = service_pid
        self.stores = stores
        self.runner = runner
        self.live = live
        self.baseline: dict[str, Any] = {}
        self.windows: list[dict[str, Any]] = []
        self.hists: list[Histogram] = []
        self.totals: dict[str, Any] = {}
        self.ready: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        service = probes.process_tree(self.service_pid) if self.service_pid else None
        return {"service": service, **self.runner.run(self.stores.read())}

    def run(self, stack: ExitStack) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=load.main, args=(child, self.plan), daemon=True, name="bench-soak-load"
        )
        proc.start()
        child.close()
        stack.callback(_stop, proc)
        self.live.say("minting the first codes and seeding refresh-token chains ...")
        self.ready = _receive(parent, time.monotonic() + READY_TIMEOUT, "ready")[1]
        self.baseline = self.sample()
        self.live.say(
            f"== soak: {self.config.duration:g} s at {self.plan.rate:g} req/s, "
            f"windows of {self.config.window:g} s ({self.ready['seeded_chains']:,} "
            "refresh chains seeded)"
        )
        start_at = time.monotonic() + 0.2
        parent.send(start_at)
        for k in range(self.config.windows):
            due = start_at + (k + 1) * self.config.window + load.DRAIN_SECONDS + LATE
            _, index, data = _receive(parent, due, "window")
            self.add(index, data, self.sample())
        parent.send("read")  # the load may close its connections now
        self.totals = _receive(parent, time.monotonic() + LATE, "done")[1]

    def add(self, index: int, data: dict[str, Any], sample: dict[str, Any]) -> None:
        record, hist = window_record(index, data, self.config, sample)
        self.windows.append(record)
        self.hists.append(hist)
        self.live.say(progress(record, self.config.windows, self.windows[0]))


def _receive(pipe: Connection, deadline: float, kind: str) -> tuple[Any, ...]:
    while True:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"the load process sent no {kind!r} in time")
        try:
            message = pipe.recv()
        except EOFError:
            raise RuntimeError("the load process died") from None
        if message[0] == "error":
            raise RuntimeError(f"the load process failed: {message[1]}")
        if message[0] == kind:
            return tuple(message)


def _stop(proc: multiprocessing.process.BaseProcess) -> None:
    proc.join(timeout=5)
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join()


def window_record(
    index: int,
    data: dict[str, Any],
    config: Config,
    sample: dict[str, Any],
) -> tuple[dict[str, Any], Histogram]:
    """One window as the report keeps it (the histogram stays in memory, for the drift)."""
    hist = Histogram(data["hist"])
    statuses = {str(s): n for s, n in sorted(data["statuses"].items()) if s != 200}
    errors = sum(data["errors"].values()) + sum(data["socket"].values())
    start = index * config.window
    lag = Histogram(data["lag"]).percentile(99) / 1000
    return {
        "index": index,
        "start_s": start,
        "end_s": start + config.window,
        "warmup": start + config.window <= config.warmup,
        "requests": data["completed"],
        "ok": data["statuses"].get(200, 0),
        "rps": round(data["completed"] / config.window, 1),
        "errors": {
            "total": errors,
            "by_status": statuses,
            "by_error": dict(data["errors"]),
            "socket": dict(data["socket"]),
        },
        "starved": dict(data["starved"]),
        "latency_ms": latency_ms(hist),
        "by_grant": {
            g: {
                "requests": h.total,
                **{k: v for k, v in latency_ms(h).items() if k in ("p50", "p99")},
            }
            for g, h in ((g, Histogram(c)) for g, c in sorted(data["by_grant"].items()))
        },
        "send_lag_p99_ms": round(lag, 3),
        "generator_cpu": round(data["generator_cpu_s"] / config.window, 3),
        "idle_chains": data["idle_chains"],
        "buffered_codes": data["buffered_codes"],
        **sample,
    }, hist


def progress(w: dict[str, Any], total: int, first: dict[str, Any]) -> str:
    minutes, seconds = divmod(int(w["end_s"]), 60)
    stage = " warm-up" if w["warmup"] else ""
    line = (
        f"   [soak] {w['index'] + 1}/{total} {minutes}:{seconds:02d}{stage}"
        f"  {w['rps']:,.0f} req/s  errors {w['errors']['total']}  p50 "
        f"{w['latency_ms']['p50']:.2f} ms  p99 {w['latency_ms']['p99']:.2f} ms"
    )
    service, first_service = w.get("service"), first.get("service")
    if service:
        growth = service["rss_mib"] - first_service["rss_mib"] if first_service else 0.0
        line += f"  RSS {service['rss_mib']:,.1f} MiB ({growth:+.1f})  fds {service['fds']}"
    if w.get("redis"):
        line += f"  Redis {w['redis']['keys']:,} keys {w['redis']['used_memory_mib']:.1f} MiB"
    if w.get("postgres"):
        line += f"  refresh_tokens {w['postgres']['refresh_tokens']['rows']:,}"
    return line


def _report(
    args: argparse.Namespace,
    config: Config,
    started: dt.datetime,
    commit: str,
    target: dict[str, Any],
    session: Session,
    notes: list[str],
    background: dict[int, float],
) -> dict[str, Any]:
    settings = config.report(args)
    lag = [w["send_lag_p99_ms"] for w in session.windows]
    totals = {
        "scheduled": session.totals.get("scheduled", 0),
        "send_lag_p99_ms": max(lag) if lag else None,
        "chains": session.totals.get(
            "chains", {"started": 0, "rotations": 0, "broken": 0, "abandoned": 0}
        ),
        "codes": session.totals.get(
            "codes", {"minted": 0, "expired_unsent": 0, "mint_failures": 0, "ttl_s": None}
        ),
    }
    if totals["codes"].get("mint_failures"):
        notes.append(
            f"minting codes failed {totals['codes']['mint_failures']} time(s), "
            f"last: {totals['codes'].get('last_mint_failure')}"
        )
    if lag and max(lag) > 5.0:
        notes.append(
            f"the generator sent up to {max(lag):.1f} ms late (send lag p99 of the "
            "worst window): latencies include its delay"
        )
    return {
        "schema": SCHEMA,
        "started_at": common.utc_text(started),
        "finished_at": common.now_text(),
        "commit": commit,
        "machine": common.machine(),
        "target": target,
        "config": settings,
        "baseline": session.baseline,
        "windows": session.windows,
        "summary": analysis.summarise(
            session.windows, session.hists, session.baseline, totals, settings
        ),
        "notes": notes,
        "background_busy": common.background_json(background),
        "command": " ".join(["python -m benchmarks soak", *common.redacted(args.argv)]),
    }
