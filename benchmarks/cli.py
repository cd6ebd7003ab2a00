"""`python -m benchmarks`: load-test a `/token` endpoint and report what it does, next to a no-op
floor measured in the same run. See benchmarks/README.md.

    python -m benchmarks --spawn                       # the whole stack here, all grants
    python -m benchmarks --target URL --client-id ID --client-secret S     # any issuer
    python -m benchmarks soak --spawn                  # 10 minutes of mixed grants (soak/)
    python -m benchmarks render RUN/report.json        # its HTML page again (render.py)

The soak and render commands are dispatched by benchmarks/__main__.py; what the commands share
is in benchmarks/common.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks import (
    assertions,
    attribution,
    common,
    cpu,
    dpop,
    flames,
    plot,
    report,
    resources,
    spawn,
)
from benchmarks.assertions import ASSERTION_LIFETIME, AssertionClients
from benchmarks.common import UsageError
from benchmarks.generators.wrk import wrk_version
from benchmarks.live import Live
from benchmarks.peer import (
    NODE_OIDC_PROVIDER,
    PEER_VERSION,
    PREFIX,
    Peer,
    external,
    issuer_of,
    node_oidc_provider,
    phase_name,
    verify_tokens,
)
from benchmarks.prepare import (
    CLIENT_AUTH,
    DPOP,
    FOR_RESOURCE,
    GRANTS,
    OPT_IN,
    REGISTERED,
    REUSED,
    TRACED,
    Client,
    Issuer,
    MixPool,
    Pool,
    PreparedPool,
    PrepareError,
    StaticPool,
    client_credentials_line,
    code_pools,
    floor_line,
    register_clients,
    register_reusing_client,
)
from benchmarks.resources import ResourceClients
from benchmarks.runner import PhaseResult, Runner

MIXABLE = (*GRANTS, *CLIENT_AUTH, *FOR_RESOURCE, *DPOP, *REUSED)
WORKLOADS = (*MIXABLE, *TRACED, "mix")


# --------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load-test POST /token per grant, closed and open loop, against a no-op "
        "floor measured in the same run. `python -m benchmarks soak --help`: the "
        "soak (a long mixed run: memory growth, latency drift); `python -m benchmarks "
        "render --help`: a report.json's HTML page.",
    )
    where = p.add_argument_group("target (one of)")
    where.add_argument(
        "--spawn", action="store_true", help="start Redis, Postgres, tokensvc and the floor here"
    )
    where.add_argument(
        "--target",
        metavar="URL",
        help="a token endpoint URL, e.g. https://idp.example.com/oauth2/token",
    )
    load = p.add_argument_group("load")
    load.add_argument(
        "--grants",
        default=None,
        help="comma-separated workloads: "
        f"{', '.join(WORKLOADS)} (default: all"
        + (f" but {', '.join(OPT_IN)}" if OPT_IN else "")
        + " with --spawn or --internal-url, those the kit registers clients for (cc_*, "
        "token_exchange) only "
        "where it can: --spawn or --database-url, cc_traced with --spawn only; else "
        "client_credentials)",
    )
    load.add_argument("--duration", type=int, default=15, help="timed seconds per workload (15)")
    load.add_argument("--warmup", type=int, default=2, help="untimed seconds before each (2)")
    load.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="closed-loop connections (32; 0: no closed loop)",
    )
    load.add_argument(
        "--rate",
        default="0.5x",
        help="open-loop rate: requests/s, or 'Fx' for F times the closed-loop "
        "peak of the same workload, or 'off' (default 0.5x)",
    )
    load.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open loop: connections at most (default 4 x concurrency, >= 64)",
    )
    load.add_argument(
        "--mix",
        default=common.DEFAULT_MIX,
        help=f"weights of the mix workload ({common.DEFAULT_MIX}; any of {', '.join(MIXABLE)})",
    )
    load.add_argument(
        "--engine",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="closed-loop generator (auto: wrk when installed)",
    )
    load.add_argument(
        "--threads", type=int, default=None, help="wrk threads (default: one per generator core)"
    )
    load.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Python generator processes (default: one per generator core)",
    )
    load.add_argument(
        "--batch",
        type=int,
        default=2000,
        help="credentials prepared before the first second (2000)",
    )
    load.add_argument("--no-floor", action="store_true", help="skip the floor")
    load.add_argument("--floor-url", help="a floor server elsewhere (python -m benchmarks.floor)")
    spawned = p.add_argument_group("--spawn")
    common.add_cores_options(
        spawned,
        "cores for tokensvc and the floor (default: the first core)",
        "cores for everything else (default: the others)",
    )
    spawned.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    common.add_postgres_url(spawned)
    spawned.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graph of the service for each closed-loop phase",
    )
    versus = p.add_argument_group("a peer, measured in the same run (benchmarks/peer.py)")
    versus.add_argument(
        "--peer",
        choices=(NODE_OIDC_PROVIDER,),
        help=f"with --spawn: install (npm) and run {NODE_OIDC_PROVIDER} "
        f"{PEER_VERSION} on tokensvc's core, each grant right after tokensvc's",
    )
    versus.add_argument(
        "--peer-url",
        metavar="URL",
        help="another vendor's token endpoint, for client_credentials",
    )
    versus.add_argument("--peer-client-id", help="--peer-url's client_credentials client")
    versus.add_argument(
        "--peer-client-secret",
        default=os.environ.get("BENCH_PEER_CLIENT_SECRET"),
        help="(or BENCH_PEER_CLIENT_SECRET, which stays out of `ps`)",
    )
    versus.add_argument(
        "--peer-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra client_credentials parameter for --peer-url (scope=..., audience=...)",
    )
    creds = p.add_argument_group("--target")
    creds.add_argument("--client-id", help="a client_credentials client")
    creds.add_argument(
        "--client-secret",
        default=os.environ.get("BENCH_CLIENT_SECRET"),
        help="(or BENCH_CLIENT_SECRET, which stays out of `ps`)",
    )
    creds.add_argument(
        "--auth-method",
        choices=("basic", "post"),
        default="basic",
        help="client_secret_basic (default) or client_secret_post",
    )
    creds.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra client_credentials parameter (scope=..., audience=...)",
    )
    creds.add_argument("--internal-url", help="a tokensvc internal listener, to mint codes")
    common.add_internal_token(creds)
    creds.add_argument(
        "--database-url",
        help="register bench clients in this tokensvc database (tokensvc client add)",
    )
    creds.add_argument("--code-client-id", help="an existing client for code/refresh grants")
    creds.add_argument("--code-client-secret", default=os.environ.get("BENCH_CODE_CLIENT_SECRET"))
    creds.add_argument("--redirect-uri", default="https://bench.example/cb")
    creds.add_argument(
        "--issuer",
        help="the target's issuer URL, the audience of the cc_* workloads' assertions "
        "(default: --target without its /token)",
    )
    creds.add_argument("--metrics-url", help="the target's /metrics (time attribution)")
    creds.add_argument("--service-pid", type=int, help="the target's pid, when local")
    creds.add_argument("--keys-file", help="the target's key file, to time signing")
    common.add_output_options(p, "benchmarks/results/<time>/")
    return p


def _rate(text: str) -> tuple[float | None, float | None]:
    """(absolute rate, fraction of the peak)."""
    text = text.strip().lower()
    if text in ("off", "0", "none", ""):
        return None, None
    try:
        if text.endswith("x"):
            return None, float(text[:-1])
        return float(text), None
    except ValueError:
        raise UsageError(f"--rate: expected a number, 'Fx' or 'off', got {text!r}") from None


def _workloads(text: str | None, full: bool, can_register: bool, spawned: bool) -> list[str]:
    if text is None:
        if not full:
            return ["client_credentials"]
        return [
            w
            for w in WORKLOADS
            if w not in OPT_IN
            and (can_register or w not in REGISTERED)
            and (spawned or w not in TRACED)
        ]
    names = [common.ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise UsageError(f"--grants: unknown {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in names]


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


# --------------------------------------------------------------------------- profiling


class Profiler:
    """py-spy flame graphs of the service, one per closed-loop phase (timed part only)."""

    def __init__(self, pid: int | None, outdir: Path, subprocesses: bool) -> None:
        binary = Path(sys.executable).with_name("py-spy")
        self.binary = str(binary) if binary.exists() else shutil.which("py-spy")
        self.pid = pid
        self.outdir = outdir
        self.subprocesses = subprocesses
        self.proc: subprocess.Popen[bytes] | None = None
        self.files: list[str] = []

    def begin(self, name: str, mode: str) -> None:
        if not self.binary or not self.pid or mode != "closed" or name == "floor":
            return
        if name.startswith(PREFIX):  # the peer's phase: the service is idle
            return
        out = self.outdir / f"profile-{name}.svg"
        argv = [
            self.binary,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "flamegraph",
            "-o",
            str(out),
        ]
        if self.subprocesses:
            argv.append("--subprocesses")
        self.proc = subprocess.Popen(  # noqa: S603
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.files.append(out.name)

    def end(self, name: str, mode: str) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:  # SIGINT: py-spy writes the flame graph out
            spawn.stop_process(proc, signal.SIGINT, timeout=30)
            text = flames.write_summary(self.outdir / f"profile-{name}.svg")
            if text is not None:  # small enough to commit with the run
                self.files.append(text.name)


# --------------------------------------------------------------------------- the run


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds every `with`: the stack is stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    return common.run_command("benchmarks", _main, args)


def _main(args: argparse.Namespace) -> int:
    if bool(args.spawn) == bool(args.target):
        raise UsageError("give exactly one of --spawn or --target URL")
    for name in ("duration", "warmup", "concurrency", "batch", "workers"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0")
    if args.duration < 1:
        raise UsageError("--duration must be at least 1 (second)")
    absolute, fraction = _rate(args.rate)
    if args.concurrency == 0 and absolute is None:
        raise UsageError("nothing to run: --concurrency 0 needs an absolute --rate")
    if fraction is not None and args.concurrency == 0:
        raise UsageError("--rate Fx needs a closed loop (--concurrency > 0) to take the peak of")
    full = bool(args.spawn or args.internal_url)
    workloads = _workloads(
        args.grants, full, bool(args.spawn or args.database_url), bool(args.spawn)
    )
    weights = common.mix_weights(args.mix, MIXABLE)
    in_use = set(workloads) | (
        {w for w, x in weights.items() if x > 0} if "mix" in workloads else set()
    )
    needs_codes = bool(in_use & {"authorization_code", "refresh_token"})
    needs_assertions = bool(in_use & set(CLIENT_AUTH))
    needs_resource = bool(in_use & set(FOR_RESOURCE))
    if in_use & set(REGISTERED) and args.target and not args.database_url:
        raise UsageError(
            f"{', '.join(w for w in REGISTERED if w in in_use)} against --target need "
            "--database-url (the kit registers its federation issuer, resource and clients)"
        )
    traced = bool(in_use & set(TRACED))
    if traced and not args.spawn:
        raise UsageError("cc_traced needs --spawn (the kit starts the traced service itself)")
    phase_s = args.duration + args.warmup + 5
    if "cc_private_key_jwt" in in_use and phase_s > ASSERTION_LIFETIME // 2:
        raise UsageError(
            "cc_private_key_jwt: --duration + --warmup must stay under "
            f"{ASSERTION_LIFETIME // 2 - 5} s (assertions expire {ASSERTION_LIFETIME} s "
            "after they are signed)"
        )
    if "cc_dpop" in in_use and args.duration + args.warmup > dpop.max_phase():
        raise UsageError(
            f"cc_dpop: --duration + --warmup must be at most {dpop.max_phase()} s (the service "
            f"accepts a DPoP proof up to {dpop.IAT_WINDOW} s after its iat, and proofs are "
            "signed before each phase); leave cc_dpop out of --grants for longer phases"
        )
    if args.target and needs_codes and not args.internal_url:
        raise UsageError(
            "authorization_code / refresh_token against --target need "
            "--internal-url and --internal-token (a tokensvc deployment)"
        )
    if args.target and not args.client_id and not args.database_url:
        raise UsageError("--target needs --client-id and --client-secret (or --database-url)")
    if args.peer and args.peer_url:
        raise UsageError("give one of --peer or --peer-url")
    if args.peer and not args.spawn:
        raise UsageError("--peer needs --spawn (the peer runs on the spawned service's core)")
    if args.peer_url and not (args.peer_client_id and args.peer_client_secret):
        raise UsageError("--peer-url needs --peer-client-id and --peer-client-secret")
    if (args.peer or args.peer_url) and not args.concurrency:
        raise UsageError("--peer / --peer-url compare closed loops: --concurrency must be > 0")

    started = dt.datetime.now(dt.UTC)
    outdir = common.output_dir(args.out, started)
    workdir = outdir / "work"
    live = Live(args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)

    version = wrk_version()
    if args.engine == "wrk" and version is None:
        raise UsageError("--engine wrk: wrk 4 is not installed (apt-get install wrk)")
    engine = "wrk" if args.engine in ("auto", "wrk") and version else "python"

    with ExitStack() as stack:
        notes: list[str] = []
        background = common.note_background(notes, live)
        watcher = cpu.Watcher()
        sink = None  # the OTLP receiver of cc_traced's service
        traced_url = traced_metrics_url = ""
        traced_pid: int | None = None
        if args.spawn:
            service_cores, other_cores, note = spawn.plan_cores(
                args.service_cores, args.generator_cores
            )
            if note:
                notes.append(note)
            live.say("starting Redis, Postgres, tokensvc and the floor ...")
            sink = stack.enter_context(spawn.traces_sink()) if traced else None
            st = stack.enter_context(
                spawn.spawn(
                    workdir,
                    workers=max(1, args.workers),
                    service_cores=service_cores,
                    other_cores=other_cores,
                    redis_url=args.redis_url,
                    postgres_url=args.postgres_url,
                    with_floor=not args.no_floor,
                    traces_to=sink.url if sink is not None else None,
                )
            )
            token_url, metrics_url = st.token_url, st.metrics_url
            traced_url, traced_metrics_url = st.traced_token_url, st.traced_metrics_url
            traced_pid = st.traced_service_pid
            internal_url, internal_token = st.internal_url, st.internal_token
            floor_url = args.floor_url or st.floor_url
            keys_file: str | None = str(st.keys_file)
            machine_client, web_client = register_clients(st.database_url)
            database_url, issuer_url = st.database_url, st.issuer
            watcher.watch("service", st.service_pid)
            watcher.watch("floor", st.floor_pid if not args.floor_url else None)
            watcher.watch("redis", st.redis_pid)
            watcher.watch("postgres", st.postgres_pid)
            service_pid: int | None = st.service_pid
            desc = (
                f"tokensvc spawned here ({st.workers} worker{'s' if st.workers > 1 else ''}"
                f" on core {cpu.describe_cores(service_cores)}; generator, Redis and "
                f"Postgres on core {cpu.describe_cores(other_cores)}; Postgres fsync and "
                "synchronous_commit on, new WAL segments not zero-filled; ES256; JSON request "
                "logs to /dev/null)"
            )
            if args.redis_url or args.postgres_url:
                desc += "; Redis/Postgres given on the command line (not pinned)"
            target = {
                "description": desc,
                "url": token_url,
                "spawned": True,
                "workers": st.workers,
                "service_cores": service_cores,
                "generator_cores": other_cores,
            }
        else:
            token_url, metrics_url = args.target, args.metrics_url
            internal_url, internal_token = args.internal_url, args.internal_token
            keys_file = args.keys_file
            service_pid = args.service_pid
            service_cores, other_cores = [], []
            watcher.watch("service", args.service_pid)
            machine_client, web_client = _external_clients(args)
            database_url = args.database_url
            issuer_url = args.issuer or token_url.rstrip("/").removesuffix("/token")
            floor_url = args.floor_url or ""
            if not floor_url and not args.no_floor:
                floor_url, floor_pid = stack.enter_context(spawn.local_floor(workdir, []))
                watcher.watch("floor", floor_pid)
                notes.append(
                    "the floor ran on this machine (loopback): it measures the "
                    "generator's ceiling, not what the target's nodes could do"
                )
            target = {
                "description": f"{token_url} (not spawned)",
                "url": token_url,
                "spawned": False,
            }
        if args.no_floor:
            floor_url = ""
        if needs_codes and web_client is None:
            raise UsageError(
                "authorization_code / refresh_token need a client for them: "
                "--code-client-id/--code-client-secret or --database-url"
            )

        generator_cores = other_cores or cpu.available_cores()
        per_core = max(1, len(generator_cores) if other_cores else min(len(generator_cores), 4))
        threads = args.threads or per_core
        processes = args.processes or per_core
        assertion_clients = None
        if needs_assertions:
            live.say("registering the kit's federation issuer and assertion clients ...")
            assert database_url is not None  # --spawn, or --database-url (checked above)
            assertion_clients = assertions.register(database_url, issuer_url, workdir)
        resource_clients = None
        if needs_resource:
            live.say(f"registering the kit's resource {resources.RESOURCE} and its clients ...")
            assert database_url is not None  # --spawn, or --database-url (checked above)
            resource_clients = resources.register(database_url, "token_exchange" in in_use)
        peer: Peer | None = None
        if args.peer:
            live.say(f"starting {NODE_OIDC_PROVIDER} {PEER_VERSION} ...")
            peer = stack.enter_context(node_oidc_provider(workdir, service_cores, live))
        elif args.peer_url:
            secret = args.peer_client_secret
            peer = external(args.peer_url, Client(args.peer_client_id, secret, args.auth_method))
        peer_issuer = issuer_of(peer) if peer is not None else None
        peer_phases = [phase_name(g) for g in workloads if peer is not None and g in peer.grants]
        reusing = None
        if in_use & set(REUSED):
            assert database_url is not None  # --spawn, or --database-url (checked above)
            reusing = register_reusing_client(database_url)
        issuer = Issuer(token_url, internal_url, internal_token)
        traced_issuer = Issuer(traced_url) if traced else None
        prover = dpop.DpopProver(issuer_url + "/token")
        pools = _pools(
            issuer,
            prover,
            machine_client,
            web_client,
            assertion_clients,
            resource_clients,
            _params(args.param),
            weights,
            live,
            args,
            (peer, peer_issuer, _params(args.peer_param)) if peer and peer_issuer else None,
            reusing,
        )
        checks = {**resources.CHECKS, "cc_dpop": dpop.check_dpop_bound(prover)}
        elsewhere: dict[str, Issuer] = {n: peer_issuer for n in peer_phases if peer_issuer}
        if traced_issuer is not None:
            elsewhere.update(dict.fromkeys(TRACED, traced_issuer))
        if peer is not None:
            checks.update(dict.fromkeys(peer_phases, verify_tokens(peer)))
        measured = [*workloads, *peer_phases]
        tokens = _samples(issuer, pools, measured, weights, live, checks, elsewhere)

        live.say("timing the service's signer ...")
        signing = attribution.signing_cost(keys_file, service_cores)

        runner = Runner(
            live=live,
            watcher=watcher,
            workdir=workdir,
            engine=engine,
            wrk_label=version,
            threads=threads,
            processes=processes,
            generator_cores=other_cores,
            batch=max(1, args.batch),
        )
        profiler = None
        if args.profile and service_pid:
            profiler = Profiler(service_pid, outdir, subprocesses=args.workers > 1)
            runner.hooks = profiler
            if not profiler.binary:
                notes.append("--profile: py-spy is not installed (pip install py-spy)")
                live.say(f"warning: {notes[-1]}")
        max_conns = args.max_connections or max(64, 4 * args.concurrency)
        phases: list[PhaseResult] = []
        failure = None
        try:
            if floor_url and args.concurrency:
                phases.append(
                    runner.closed(
                        "floor",
                        floor_url,
                        StaticPool("floor", floor_line()),
                        args.concurrency,
                        args.warmup,
                        args.duration,
                        None,
                    )
                )
            for name in workloads:
                pool = pools[name]
                peak = None
                url, phase_metrics = (
                    (traced_url, traced_metrics_url) if name in TRACED else (token_url, metrics_url)
                )
                if name in TRACED:  # its CPU is the traced service's
                    watcher.watch("service", traced_pid)
                if args.concurrency:
                    closed = runner.closed(
                        name,
                        url,
                        pool,
                        args.concurrency,
                        args.warmup,
                        args.duration,
                        phase_metrics,
                    )
                    phases.append(closed)
                    peak = closed.outcome.rate
                rate = (
                    absolute
                    if absolute is not None
                    else (fraction * peak if fraction is not None and peak else None)
                )
                if rate:
                    basis = f"{fraction:g} x closed-loop peak" if fraction is not None else ""
                    phases.append(
                        runner.open(
                            name,
                            url,
                            pool,
                            rate,
                            args.warmup,
                            args.duration,
                            max_conns,
                            phase_metrics,
                            basis,
                        )
                    )
                if name in TRACED:
                    watcher.watch("service", service_pid)
                if peer is not None and phase_name(name) in peer_phases:
                    watcher.watch("service", peer.pid)  # the peer's CPU, on the same core
                    phases.append(
                        runner.closed(
                            phase_name(name),
                            peer.token_url,
                            pools[phase_name(name)],
                            args.concurrency,
                            args.warmup,
                            args.duration,
                            None,
                        )
                    )
                    watcher.watch("service", service_pid)
        except (PrepareError, RuntimeError, OSError) as exc:  # report what was measured
            failure = " ".join(str(exc).split())[:1000]
            notes.append(f"the run stopped early: {failure}")

    if sink is not None:
        notes.append(_traced_note(sink.spans()))
    meta = {
        "started_at": common.utc_text(started),
        "finished_at": common.now_text(),
        "commit": common.git_commit(),
        "machine": common.machine(),
        "target": target,
        "engines": {
            "closed": runner_label(engine, version, threads) if args.concurrency else "not run",
            "open": f"python generator ({processes} process{'es' if processes > 1 else ''}, uvloop)"
            if absolute is not None or fraction is not None
            else "not run",
        },
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "workloads": workloads,
            "mix": weights,
            "batch": args.batch,
            "max_connections": max_conns,
        },
        "notes": notes,
        "profiles": profiler.files if profiler else [],
        "peer": None
        if peer is None
        else {"label": peer.label, "url": peer.token_url, "targets": peer.targets},
        "background_busy": common.background_json(background),
        "command": " ".join(["python -m benchmarks", *common.redacted(sys.argv[1:])]),
    }
    ctx = {
        "server_capacity": max(1, min(args.workers, len(service_cores) or args.workers)),
        "generator_capacity": max(
            1, min(threads if engine == "wrk" else processes, len(generator_cores))
        ),
        "other_cores": other_cores,
        "service_cores": service_cores,
        "service_measured": service_pid is not None,
    }
    data = report.build(meta, phases, ctx, signing, tokens)
    text = report.table(data)
    shutil.rmtree(workdir, ignore_errors=True)
    common.write_report(outdir, data, text, plot.page(data, text))
    if failure:
        print(f"benchmarks: {failure}", file=sys.stderr)
        return 1
    return 0


def _traced_note(spans: list[Any]) -> str:
    """What cc_traced's service exported: shows the sampler sampled about 1% of requests."""
    requests = sum(1 for s in spans if s.kind == "server" and s.name == "POST /token")
    return (
        f"cc_traced: tracing on at {spawn.TRACED_SAMPLER['OTEL_TRACES_SAMPLER']} "
        f"{spawn.TRACED_SAMPLER['OTEL_TRACES_SAMPLER_ARG']}; the service exported "
        f"{len(spans)} spans, {requests} of them /token requests, to the kit's OTLP receiver"
    )


def runner_label(engine: str, version: str | None, threads: int) -> str:
    if engine == "wrk":
        return f"{version} with wrk_token.lua ({threads} thread{'s' if threads > 1 else ''})"
    return "python generator (no wrk installed)" if version is None else "python generator"


def _external_clients(args: argparse.Namespace) -> tuple[Client, Client | None]:
    machine_client = web_client = None
    if args.database_url and not (args.client_id and args.code_client_id):
        registered_machine, registered_web = register_clients(args.database_url)
        machine_client, web_client = registered_machine, registered_web
    if args.client_id:
        if not args.client_secret:
            raise UsageError("--client-id needs --client-secret")
        machine_client = Client(args.client_id, args.client_secret, args.auth_method)
    if args.code_client_id:
        if not args.code_client_secret:
            raise UsageError("--code-client-id needs --code-client-secret")
        web_client = Client(
            args.code_client_id, args.code_client_secret, args.auth_method, args.redirect_uri
        )
    if machine_client is None:
        raise UsageError("no client_credentials client: --client-id/--client-secret")
    return machine_client, web_client


def _pools(
    issuer: Issuer,
    prover: dpop.DpopProver,
    machine_client: Client,
    web_client: Client | None,
    assertion_clients: AssertionClients | None,
    resource_clients: ResourceClients | None,
    params: dict[str, str],
    weights: dict[str, float],
    live: Live,
    args: argparse.Namespace,
    peer: tuple[Peer, Issuer, dict[str, str]] | None = None,
    reusing: Client | None = None,
) -> dict[str, Pool]:
    names = {
        "authorization_code": "authorization codes",
        "refresh_token": "refresh tokens",
        phase_name("authorization_code"): "the peer's authorization codes",
        phase_name("refresh_token"): "the peer's refresh tokens",
        "cc_private_key_jwt": "private_key_jwt assertions",
        "cc_dpop": "DPoP proofs",
    }

    def announce(name: str, count: int, seconds: float) -> None:
        live.prepared(names.get(name, name), count, seconds)

    def max_age(ttl: int | None) -> float | None:
        # a code or an assertion must still be valid when sent: at most one timed run after
        # it is handed out
        return None if ttl is None else ttl - (args.duration + args.warmup + 5)

    cc_line = client_credentials_line(machine_client, params)
    cc = StaticPool("client_credentials", cc_line)
    pools: dict[str, Pool] = {
        "client_credentials": cc,
        "cc_traced": StaticPool("cc_traced", cc_line),
        "cc_dpop": PreparedPool(
            "cc_dpop",
            lambda n: dpop.dpop_lines(machine_client, prover, n, params),
            announce,
            max_age=lambda: max_age(dpop.IAT_WINDOW),
        ),
    }
    if web_client is not None:
        pools.update(code_pools(issuer, web_client, announce, max_age))
    if peer is not None:  # the peer's own clients and credentials (benchmarks/peer.py)
        them, their_issuer, their_params = peer
        pools[phase_name("client_credentials")] = StaticPool(
            phase_name("client_credentials"), client_credentials_line(them.machine, their_params)
        )
        if them.web is not None:
            pools.update(code_pools(their_issuer, them.web, announce, max_age, PREFIX))
    if assertion_clients is not None:
        pools["cc_federated_jwt"] = StaticPool(
            "cc_federated_jwt", assertion_clients.federated_line(params)
        )
        pools["cc_private_key_jwt"] = PreparedPool(
            "cc_private_key_jwt",
            lambda n: assertion_clients.private_key_jwt_lines(n, params),
            announce,
            max_age=lambda: max_age(ASSERTION_LIFETIME),
        )
    if reusing is not None:  # one request line, sent again and again: the cache answers it
        pools["cc_reused"] = StaticPool("cc_reused", client_credentials_line(reusing, params))
    if resource_clients is not None:
        pools["cc_resource"] = StaticPool("cc_resource", resource_clients.resource_line())
    if resource_clients is not None and resource_clients.exchanger is not None:
        # not spent by an exchange: the one subject token is sent again and again
        subject = asyncio.run(
            issuer.sample("token_exchange (its subject token)", resource_clients.subject_line())
        )
        pools["token_exchange"] = StaticPool(
            "token_exchange", resource_clients.exchange_line(subject["access_token"])
        )
    parts = {g: (pools[g], w) for g, w in weights.items() if g in pools and w > 0}
    pools["mix"] = MixPool(parts)
    return pools


def _samples(
    issuer: Issuer,
    pools: dict[str, Pool],
    workloads: list[str],
    weights: dict[str, float],
    live: Live,
    checks: dict[str, Callable[[str, dict[str, Any]], None]],
    elsewhere: dict[str, Issuer],
) -> dict[str, dict[str, Any]]:
    """One request per workload before anything is timed: checks the set-up (a 200 with an
    access token, and what `checks` of its workload want: for a resource where it should be,
    resources.CHECKS; DPoP-bound to the kit's key, dpop.check_dpop_bound) and shows which JWTs a
    response carries (for the signing share). Spends one credential each."""
    wanted = set(workloads) - {"mix"}
    if "mix" in workloads:
        wanted |= {g for g, w in weights.items() if w > 0}
    tokens: dict[str, dict[str, Any]] = {}
    for grant in (*MIXABLE, *TRACED, *(w for w in workloads if w.startswith(PREFIX))):
        if grant not in wanted or grant not in pools:
            continue
        line = pools[grant].take(1)
        if not line:
            raise PrepareError(f"could not prepare a {grant} request")
        target = elsewhere.get(grant, issuer)
        body = asyncio.run(target.sample(grant, line[0]))
        check = checks.get(grant)
        if check is not None:
            check(grant, body)
        # cc_reused: the cache answers, nothing is signed per request
        tokens[grant] = {} if grant in REUSED else attribution.jwts_in(body)
        live.say(
            f"   {grant}: a request works ({', '.join(tokens[grant]) or 'no JWT'} in the response)"
        )
    if "mix" in workloads:
        total = sum(w for g, w in weights.items() if g in tokens)
        mixed: dict[str, float] = {}
        for grant, weight in weights.items():
            for name, count in tokens.get(grant, {}).items():
                mixed[name] = mixed.get(name, 0.0) + count * weight / total
        tokens["mix"] = {k: round(v, 3) for k, v in mixed.items()}
    return tokens
