"""`python -m benchmarks tls`: `/token` over HTTPS with mutual TLS (RFC 8705 `tls_client_auth`)
against the same request with a client secret, in one run. See benchmarks/README.md.

    python -m benchmarks tls                          # 15 s per workload, 32 connections
    python -m benchmarks tls --duration 5 --warmup 1 --concurrency 8 --out /tmp/tls

It spawns the stack of `--spawn` (benchmarks/spawn.py) plus a second token service serving
HTTPS and asking for client certificates (throwaway certificates: benchmarks/certs.py), then
drives three closed-loop workloads with ApacheBench, one after the other:

* `client_credentials`: client_secret_basic over plain HTTP, the baseline;
* `cc_secret_https`: the same request over HTTPS without a client certificate (TLS alone);
* `cc_mtls`: a `tls_client_auth` client sending its client_id and its certificate, no secret.

wrk cannot present a client certificate; ab can (`-E`), so ab drives all three: ratios come
from one generator. ab speaks HTTP/1.0 with `Connection: Keep-Alive` (`-k`), which aiohttp
honours, so each connection does its TLS handshake once and the figures are the per-request
cost on kept-alive connections. ab is one process: its CPU is reported, to show when it is the
bottleneck rather than the service.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from benchmarks import certs, common, cpu, spawn
from benchmarks.common import UsageError
from benchmarks.live import Live
from benchmarks.prepare import add_client, client_credentials_line, register_clients

SCHEMA = "tokensvc-bench-tls/1"
BASELINE = "client_credentials"
WORKLOADS = (BASELINE, "cc_secret_https", "cc_mtls")
DESCRIPTIONS = {
    BASELINE: "client secret (client_secret_basic) over plain HTTP: the baseline",
    "cc_secret_https": "the same request over HTTPS, no client certificate: TLS alone",
    "cc_mtls": "tls_client_auth over HTTPS: a client certificate, no secret",
}
TARGETS = {"cc_mtls": 0.70}  # closed-loop req/s as a fraction of BASELINE's in the same run
SCOPE = "api:read"  # the machine client's scope (benchmarks/prepare.py), asked by all three
FORM = "application/x-www-form-urlencoded"
# ab sizes its per-request table from -n: a bound high enough that -t ends every run
# (checked: a run that reaches it fails), small enough to stay a lazily touched allocation
MAX_RPS = 200_000
SATURATED = 0.85  # a process busy this much of its capacity is the bottleneck
PROGRESS_EVERY = 5.0  # seconds between progress lines while ab runs


class AbError(RuntimeError):
    """ab failed or printed something we cannot read; the message carries its output."""


# --------------------------------------------------------------------------- ab's output


@dataclass
class AbResult:
    """What one ab run printed."""

    complete: int
    failed: int
    non_2xx: int
    seconds: float
    rps: float
    percentiles_ms: dict[int, float]  # 0..100 (CSV: to the µs) or ab's table (whole ms)
    write_errors: int = 0
    failed_detail: dict[str, int] = field(default_factory=dict)  # Connect, Receive, ...
    keep_alive: int | None = None  # "Keep-Alive requests" (with -k only)
    tls: str | None = None  # "SSL/TLS Protocol": protocol,cipher,bits

    @property
    def errors(self) -> int:
        """Failed + non-2xx + write errors. Without -l a response of another length is both
        failed (Length) and, when it is an error, non-2xx; with -l, as run here, none is both."""
        return self.failed + self.non_2xx + self.write_errors


def request_bound(seconds: int) -> int:
    """ab's -n for a run of `seconds`: never reached, so -t ends the run."""
    return max(50_000, seconds * MAX_RPS)


def _field(text: str, label: str, pattern: str = r"(\d+)") -> str | None:
    match = re.search(rf"^{re.escape(label)}:\s+{pattern}", text, re.MULTILINE)
    return match.group(1) if match else None


def parse_ab(text: str, csv: str | None = None) -> AbResult:
    """ab's report (stdout), and the `-e` CSV when there is one: ab's own percentiles to the
    µs rather than the whole milliseconds of its table."""
    complete = _field(text, "Complete requests")
    seconds = _field(text, "Time taken for tests", r"([\d.]+) seconds")
    rps = _field(text, "Requests per second", r"([\d.]+)")
    if complete is None or seconds is None or rps is None:
        raise AbError(f"ab printed no results: {' '.join(text.split())[-1500:]}")
    detail = re.search(
        r"^\s+\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)",
        text,
        re.MULTILINE,
    )
    names = ("connect", "receive", "length", "exceptions")
    percentiles: dict[int, float] = {}
    if csv:
        for line in csv.splitlines()[1:]:  # "Percentage served,Time in ms"
            share, _, ms = line.partition(",")
            if share.strip().isdigit() and ms.strip():
                percentiles[int(share)] = float(ms)
    if not percentiles:
        for share, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.MULTILINE):
            percentiles[int(share)] = float(ms)
    keep_alive = _field(text, "Keep-Alive requests")
    return AbResult(
        complete=int(complete),
        failed=int(_field(text, "Failed requests") or 0),
        non_2xx=int(_field(text, "Non-2xx responses") or 0),
        seconds=float(seconds),
        rps=float(rps),
        percentiles_ms=percentiles,
        write_errors=int(_field(text, "Write errors") or 0),
        failed_detail=dict(zip(names, map(int, detail.groups()), strict=True)) if detail else {},
        keep_alive=int(keep_alive) if keep_alive is not None else None,
        tls=_field(text, "SSL/TLS Protocol", r"(\S+)"),
    )


def percentile(result: AbResult, share: int) -> float | None:
    """ab's `share` % latency, in ms (the nearest share it printed at or above)."""
    shares = sorted(s for s in result.percentiles_ms if s >= share)
    return result.percentiles_ms[shares[0]] if shares else None


def ab_version() -> str | None:
    """ "ApacheBench 2.3", or None when ab is not installed."""
    binary = shutil.which("ab")
    if binary is None:
        return None
    done = subprocess.run(  # noqa: S603
        [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"ApacheBench, Version (\S+)", done.stdout)
    return f"ApacheBench {match.group(1)}" if match else "ApacheBench"


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """One closed-loop workload: the request ab repeats, and the service that answers it."""

    name: str
    url: str
    body: str
    service_pid: int
    basic: str = ""  # Base64 client_id:secret for HTTP Basic, or nothing
    client_pem: Path | None = None  # certificate + key, for ab -E
    ca: Path | None = None  # to verify the server (the sample request; ab does not verify)
    client_cert: tuple[Path, Path] | None = None  # the same certificate, for the sample

    def ab_argv(self, body_file: Path, seconds: int, concurrency: int, csv: Path) -> list[str]:
        argv = ["ab", "-k", "-l", "-q", "-r", "-c", str(concurrency)]
        # -t before -n: -t resets the request bound to 50,000, -n then raises it again
        argv += ["-t", str(seconds), "-n", str(request_bound(seconds))]
        argv += ["-p", str(body_file), "-T", FORM, "-e", str(csv)]
        if self.basic:
            argv += ["-H", f"Authorization: Basic {self.basic}"]
        if self.client_pem is not None:
            argv += ["-E", str(self.client_pem)]
        return [*argv, self.url]


def redacted_argv(argv: list[str]) -> list[str]:
    """ab's command line for the report: no secret, no temporary paths."""
    out = []
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i else ""
        if before == "-H" and arg.startswith("Authorization:"):
            arg = "Authorization: Basic ***"
        elif before in ("-p", "-e", "-E"):
            arg = Path(arg).name
        out.append(arg)
    return out


def sample(workload: Workload, x5t: str) -> dict[str, Any]:
    """One request before anything is timed: a 200 with an access token, bound to the client
    certificate (`cnf.x5t#S256`) exactly when one is sent. AbError otherwise."""
    parts = urlsplit(workload.url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(workload.ca) if workload.ca else None)
        if workload.client_cert is not None:
            context.load_cert_chain(*map(str, workload.client_cert))
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Content-Type": FORM}
    if workload.basic:
        headers["Authorization"] = f"Basic {workload.basic}"
    try:
        conn.request("POST", parts.path, workload.body, headers)
        resp = conn.getresponse()
        status, raw = resp.status, resp.read()
    finally:
        conn.close()
    what = f"{workload.name}: the sample request"
    if status != 200:
        raise AbError(f"{what} answered {status}: {raw[:500]!r}")
    token = json.loads(raw).get("access_token", "")
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise AbError(f"{what}: no JWT access token in {raw[:500]!r}") from exc
    bound = (claims.get("cnf") or {}).get("x5t#S256")
    wanted = x5t if workload.client_pem is not None else None
    if bound != wanted:
        raise AbError(f"{what}: cnf.x5t#S256 of the access token is {bound!r}, not {wanted!r}")
    return {"status": status, "cnf_x5t#S256": bound, "bound_to_client_certificate": bound == x5t}


@dataclass(frozen=True)
class Usage:
    """CPU during one ab run: seconds of the service that answered and of ab, and how busy
    each core was (someone else's work on the service's core shows there)."""

    wall: float
    service: float | None
    ab: float
    cores: dict[int, float]


def _core_busy(
    before: dict[int, tuple[int, int]] | None, after: dict[int, tuple[int, int]] | None
) -> dict[int, float]:
    if not before or not after:
        return {}
    return {
        core: (busy - before[core][0]) / max(1, total - before[core][1])
        for core, (busy, total) in after.items()
        if core in before
    }


def _run_ab(
    workload: Workload,
    workdir: Path,
    seconds: int,
    concurrency: int,
    cores: list[int],
    live: Live,
    label: str,
) -> tuple[AbResult, Usage, list[str]]:
    """One ab run pinned to `cores`: its result, the CPU used meanwhile and its command line.
    AbError when ab exits with an error or reaches its request bound."""
    body_file = workdir / f"{workload.name}.body"
    body_file.write_text(workload.body)
    csv = workdir / f"{workload.name}.csv"
    csv.unlink(missing_ok=True)
    argv = workload.ab_argv(body_file, seconds, concurrency, csv)
    out, err = workdir / "ab.stdout", workdir / "ab.stderr"

    def pin_child() -> None:  # runs in the child between fork and exec
        if cores:
            os.sched_setaffinity(0, set(cores))

    service_before = cpu.tree_cpu_seconds(workload.service_pid)
    ab_before = cpu.children_cpu_seconds()
    ticks_before = cpu.core_ticks()
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: S603
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, preexec_fn=pin_child
        )
        try:
            while True:
                try:
                    proc.wait(timeout=PROGRESS_EVERY)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    live.say(f"   [{workload.name}] {label} {elapsed:.0f}/{seconds} s")
        finally:
            spawn.stop_process(proc, signal.SIGINT, timeout=5)
    wall = time.monotonic() - started
    service_after = cpu.tree_cpu_seconds(workload.service_pid)
    core_busy = _core_busy(ticks_before, cpu.core_ticks())
    text = out.read_text(errors="replace")
    if proc.returncode != 0:
        tail = " ".join((err.read_text(errors="replace") + text).split())[-1500:]
        raise AbError(f"{workload.name}: ab exited with {proc.returncode}: {tail}")
    result = parse_ab(text, csv.read_text() if csv.exists() else None)
    if result.complete >= request_bound(seconds):
        raise AbError(f"{workload.name}: ab reached its -n bound before -t ended the run")
    usage = Usage(
        wall=wall,
        service=None
        if service_before is None or service_after is None
        else service_after - service_before,
        ab=cpu.children_cpu_seconds() - ab_before,
        cores=core_busy,
    )
    return result, usage, redacted_argv(argv)


def measure(
    workload: Workload,
    workdir: Path,
    args: argparse.Namespace,
    cores: list[int],
    service_cores: list[int],
    capacity: int,
    live: Live,
) -> dict[str, Any]:
    """The untimed run (ab pinned to `cores`), then the timed one: the workload's entry of
    the report."""
    live.phase(workload.name, DESCRIPTIONS[workload.name])
    if args.warmup:
        warm, _, _ = _run_ab(
            workload, workdir, args.warmup, args.concurrency, cores, live, "warmup"
        )
        if warm.errors:
            raise AbError(
                f"{workload.name}: the untimed run had {warm.failed} failed requests and "
                f"{warm.non_2xx} non-2xx responses"
            )
    result, usage, argv = _run_ab(
        workload, workdir, args.duration, args.concurrency, cores, live, "timed"
    )
    lat = {
        name: percentile(result, share)
        for name, share in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    }
    entry: dict[str, Any] = {
        "name": workload.name,
        "description": DESCRIPTIONS[workload.name],
        "scheme": urlsplit(workload.url).scheme,
        "client_certificate": workload.client_pem is not None,
        "rps": round(result.rps, 1),
        "requests": result.complete,
        "seconds": result.seconds,
        "latency_ms": lat,
        "errors": {
            "total": result.errors,
            "failed": result.failed,
            "failed_detail": result.failed_detail,
            "non_2xx": result.non_2xx,
            "write_errors": result.write_errors,
        },
        "keep_alive_requests": result.keep_alive,
        "tls": result.tls,
        "ab": argv,
    }
    if usage.service is not None and result.complete:
        entry["service_cpu_us_per_request"] = round(usage.service / result.complete * 1e6, 1)
    if usage.wall > 0:
        entry["cpu"] = {
            "service": None if usage.service is None else round(usage.service / usage.wall, 3),
            "ab": round(usage.ab / usage.wall, 3),
            "cores": {str(c): round(u, 3) for c, u in sorted(usage.cores.items())},
        }
        busy = [usage.cores[c] for c in service_cores if c in usage.cores]
        entry["bound"] = _bound(entry["cpu"], capacity, min(busy) if busy else None)
    live.say(
        f"   {workload.name}: {entry['rps']:,.0f} req/s, p50 {_ms(lat['p50'])}, p99 "
        f"{_ms(lat['p99'])}, errors {result.errors}, kept alive {_kept_alive(entry)}"
    )
    return entry


def _bound(used: dict[str, Any], capacity: int, service_cores_busy: float | None) -> str:
    """What limited a closed-loop run, in words (the service, ab, or other work on the
    service's cores)."""
    service, ab = used.get("service"), used.get("ab")
    if service is not None and service >= SATURATED * capacity:
        return f"service CPU ({service / capacity:.0%} of {capacity} core{'s' * (capacity > 1)})"
    if ab is not None and ab >= SATURATED:
        return f"AB CPU ({ab:.0%} of its one core): the generator, not the service"
    if service_cores_busy is not None and service_cores_busy >= 0.9:
        return (
            f"the service's core saturated (the service {service or 0:.0%}, the rest other "
            "processes or the kernel)"
        )
    return "neither CPU saturated"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _kept_alive(entry: dict[str, Any]) -> str:
    kept = entry.get("keep_alive_requests")
    if kept is None or not entry["requests"]:
        return "-"
    return f"{kept / entry['requests']:.0%}"


def compare(entries: list[dict[str, Any]]) -> None:
    """Each workload against BASELINE of the same run (`vs_client_credentials`), and its
    target where it has one."""
    base = next((e for e in entries if e["name"] == BASELINE), None)
    if base is None or not base["rps"]:
        return
    for entry in entries:
        entry["vs_client_credentials"] = {"rps": round(entry["rps"] / base["rps"], 3)}
        target = TARGETS.get(entry["name"])
        if target is not None:
            met = entry["vs_client_credentials"]["rps"] >= target
            entry["target_vs_client_credentials"] = {"rps_at_least": target, "met": met}


# --------------------------------------------------------------------------- the report


def table(data: dict[str, Any]) -> str:
    """summary.txt, from report.json alone."""
    lines = [
        f"tokensvc /token over HTTPS with mutual TLS (RFC 8705)  {data['started_at']}  "
        f"commit {data['commit']}",
        f"machine: {data['machine']['description']}",
        f"target: {data['target']['description']}",
        f"generator: {data['generator']}",
        "",
        f"closed loop, {data['config']['concurrency']} kept-alive connections, "
        f"{data['config']['duration_s']} s per workload after {data['config']['warmup_s']} s "
        "untimed",
        f"{'workload':20} {'req/s':>9} {'x secret':>9} {'target':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'kept alive':>11} {'svc µs/req':>11} {'ab CPU':>7}  bound",
    ]
    for e in data["workloads"]:
        vs = e.get("vs_client_credentials", {}).get("rps")
        target = e.get("target_vs_client_credentials")
        mark = "-" if not target else f"{target['rps_at_least']:.2f}{'' if target['met'] else '!'}"
        lat = e["latency_ms"]
        cost = e.get("service_cpu_us_per_request")
        ab = (e.get("cpu") or {}).get("ab")
        lines.append(
            f"{e['name']:20} {e['rps']:>9,.0f} {'-' if vs is None else f'{vs:.3f}':>9} "
            f"{mark:>7} {_cell(lat['p50'])} {_cell(lat['p99'])} {e['errors']['total']:>7} "
            f"{_kept_alive(e):>11} {'-' if cost is None else f'{cost:,.1f}':>11} "
            f"{'-' if ab is None else f'{ab:.0%}':>7}  {e.get('bound', '-')}"
        )
    lines.append(
        "(x secret: req/s against client_credentials of this run; target: the minimum ratio, "
        "'!' = not met; p50/p99: ab's percentiles; errors: ab's failed requests and non-2xx "
        "responses; svc µs/req: CPU of the service that answered; ab CPU: of its one core)"
    )
    lines.append("")
    for e in data["workloads"]:
        how = e["description"] + (f" [{e['tls']}]" if e.get("tls") else "")
        lines.append(f"{e['name']:20} {how}")
    check = data.get("check", {}).get("cc_mtls")
    if check:
        lines.append(
            f"cc_mtls sample: {check['status']}, access token bound to the client certificate "
            f"(cnf.x5t#S256 {check['cnf_x5t#S256']}, SAN {data['target']['client_san_uri']})"
        )
    errors = [e for e in data["workloads"] if e["errors"]["total"]]
    lines.append("")
    if errors:
        for e in errors:
            err = e["errors"]
            lines.append(
                f"ERRORS: {e['name']}: {err['failed']} failed requests {err['failed_detail']}, "
                f"{err['non_2xx']} non-2xx responses, {err['write_errors']} write errors"
            )
    elif data["workloads"]:
        lines.append("errors: none")
    for note in data["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _cell(ms: float | None) -> str:
    return f"{'-' if ms is None else f'{ms:.2f}':>8}"


# --------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks tls",
        description="client_credentials at /token over plain HTTP (client secret), over HTTPS "
        "(client secret) and over HTTPS with mutual TLS (tls_client_auth), closed loop with "
        "ApacheBench (ab -k) against a spawned stack.",
    )
    load = p.add_argument_group("load")
    load.add_argument("--duration", type=int, default=15, help="timed seconds per workload (15)")
    load.add_argument(
        "--warmup", type=int, default=2, help="seconds of an untimed ab run before each (2)"
    )
    load.add_argument("--concurrency", type=int, default=32, help="ab -c: connections (32)")
    spawned = p.add_argument_group("the spawned stack")
    common.add_cores_options(
        spawned,
        "cores for both token services (default: the first core)",
        "cores for ab, Redis and Postgres (default: the others)",
    )
    spawned.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    common.add_postgres_url(spawned)
    common.add_output_options(p, "benchmarks/results/tls/<time>/")
    return p


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds every `with`: the stack is stopped


def main(argv: list[str] | None = None) -> int:
    """The command; `argv` without the word `tls` (benchmarks/__main__.py drops it)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    return common.run_command("benchmarks tls", _main, args)


def _main(args: argparse.Namespace) -> int:
    for name in ("duration", "concurrency", "workers"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must be >= 0")
    version = ab_version()
    if version is None:
        raise UsageError("ab is not installed (Debian: apt-get install apache2-utils)")
    started = dt.datetime.now(dt.UTC)
    # a level below the load tests' runs: benchmarks/results/*/report.json are theirs
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    outdir = common.output_dir(args.out or str(common.RESULTS / "tls" / stamp), started)
    workdir = outdir / "work"
    live = Live(args.quiet)
    signal.signal(signal.SIGTERM, _on_sigterm)
    notes: list[str] = []
    entries: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    failure = None
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)  # the keys and the secret go too
        background = common.note_background(notes, live)
        service_cores, other_cores, note = spawn.plan_cores(
            args.service_cores, args.generator_cores
        )
        if note:
            notes.append(note)
        bench_certs = certs.generate(workdir / "certs")
        live.say("starting Redis, Postgres and two token services (HTTP, HTTPS) ...")
        st = stack.enter_context(
            spawn.spawn(
                workdir,
                workers=args.workers,
                service_cores=service_cores,
                other_cores=other_cores,
                redis_url=args.redis_url,
                postgres_url=args.postgres_url,
                with_floor=False,
                tls=spawn.TLSFiles(bench_certs.server_cert, bench_certs.server_key, bench_certs.ca),
            )
        )
        workloads = _workloads(st, bench_certs)
        for workload in workloads:
            checks[workload.name] = sample(workload, bench_certs.client_x5t)
        live.say("   a sample request of each works; cc_mtls's token is bound to its certificate")
        generator_cores = other_cores or cpu.available_cores()
        capacity = max(1, min(args.workers, len(service_cores) or args.workers))
        try:
            for workload in workloads:
                entries.append(
                    measure(workload, workdir, args, generator_cores, service_cores, capacity, live)
                )
        except (RuntimeError, OSError) as exc:  # report what was measured
            failure = " ".join(str(exc).split())[:1500]
            notes.append(f"the run stopped early: {failure}")
    compare(entries)
    for entry in entries:
        kept = entry["keep_alive_requests"]
        if kept is not None and kept < 0.99 * entry["requests"]:
            notes.append(
                f"{entry['name']}: only {kept:,} of {entry['requests']:,} requests on kept-alive "
                "connections: its figures include TLS handshakes"
            )
    data = {
        "schema": SCHEMA,
        "started_at": common.utc_text(started),
        "finished_at": common.now_text(),
        "commit": common.git_commit(),
        "machine": common.machine(),
        "generator": f"{version} (one process, -k: HTTP/1.0 keep-alive) on core "
        f"{cpu.describe_cores(other_cores)}",
        "target": {
            "description": (
                f"two tokensvc services spawned here, plain HTTP and HTTPS (TLS 1.2+, client "
                f"certificates asked for and verified against a throwaway CA), {args.workers} "
                f"worker{'s' * (args.workers > 1)} each on core "
                f"{cpu.describe_cores(service_cores)}; ab, Redis and Postgres on core "
                f"{cpu.describe_cores(other_cores)}; ES256"
            ),
            "http_url": st.token_url,
            "https_url": st.tls_token_url,
            "workers": args.workers,
            "service_cores": service_cores,
            "generator_cores": other_cores,
            "client_san_uri": bench_certs.san_uri,
        },
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "workloads": list(WORKLOADS),
            "scope": SCOPE,
        },
        "check": checks,
        "workloads": entries,
        "notes": notes,
        "background_busy": common.background_json(background),
        "command": " ".join(["python -m benchmarks tls", *common.redacted(args.argv)]),
    }
    text = table(data)
    (outdir / "report.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    (outdir / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"\nreport: {outdir / 'report.json'}")
    errors = [e["name"] for e in entries if e["errors"]["total"]]
    if failure or errors:
        why = failure or f"errors in {', '.join(errors)} (ab's failed or non-2xx requests)"
        print(f"benchmarks tls: FAILED: {why}", file=sys.stderr)
        return 1
    return 0


def _workloads(st: spawn.Stack, bench_certs: certs.BenchCerts) -> list[Workload]:
    """The three requests: the main benchmark's machine client with its secret, over HTTP
    and HTTPS, and a tls_client_auth client named by the certificate's URI SAN."""
    machine, _ = register_clients(st.database_url)
    basic, body = client_credentials_line(machine, {"scope": SCOPE})
    mtls = add_client(
        st.database_url,
        "--name",
        "bench-mtls",
        "--grant-type",
        "client_credentials",
        "--scope",
        SCOPE,
        "--auth-method",
        "tls_client_auth",
        "--tls-san-uri",
        bench_certs.san_uri,
    )
    mtls_body = urlencode(
        {"grant_type": "client_credentials", "client_id": mtls["client_id"], "scope": SCOPE}
    )
    tls_pid = st.tls_service_pid
    assert tls_pid is not None  # spawned with tls=
    return [
        Workload(BASELINE, st.token_url, body, st.service_pid, basic=basic),
        Workload("cc_secret_https", st.tls_token_url, body, tls_pid, basic, ca=bench_certs.ca),
        Workload(
            "cc_mtls",
            st.tls_token_url,
            mtls_body,
            tls_pid,
            client_pem=bench_certs.client_pem,
            ca=bench_certs.ca,
            client_cert=(bench_certs.client_cert, bench_certs.client_key),
        ),
    ]
