"""`--spawn`: the whole stack on this machine, started and stopped by the benchmark.

* a throwaway redis-server and a throwaway Postgres (fsync and synchronous_commit on; new WAL
  segments not zero-filled, see POSTGRES_SETTINGS), on free loopback ports
  (tests/servers.py), unless `--redis-url` / `--postgres-url` name
  servers to use (never the machine's own on 6379/5432 by default);
* a fresh database, migrated with `tokensvc migrate`; an ES256 key file from
  `tokensvc keys generate`;
* `tokensvc serve token` with N workers, pinned to the service cores (default core 0), its
  JSON request log going to /dev/null;
* the floor server (benchmarks.floor), pinned to the same cores;
* with `tls=`, a second `tokensvc serve token` with the same settings serving HTTPS with
  client certificates (`python -m benchmarks tls`), pinned to the same cores.

This process (and so wrk, the Python generator, Redis and Postgres, which it starts) moves to
the other cores first. Everything is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import cpu
from benchmarks.prepare import base_env, run_tokensvc, tokensvc_command

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0


class SpawnError(RuntimeError):
    """Part of the stack did not start; the message carries its error output."""


@dataclass
class Stack:
    token_url: str
    internal_url: str
    internal_token: str
    metrics_url: str
    database_url: str
    keys_file: Path
    floor_url: str
    service_pid: int
    floor_pid: int | None
    redis_pid: int | None
    postgres_pid: int | None
    workers: int
    service_cores: list[int]
    other_cores: list[int]
    notes: list[str] = field(default_factory=list)
    redis_url: str = ""  # what the service uses (the soak reads its INFO)
    issuer: str = ""  # TOKENSVC_ISSUER (the audience of workload tokens)
    tls_token_url: str = ""  # the HTTPS service's /token, with `tls=`
    tls_service_pid: int | None = None
    traced_token_url: str = ""  # the traced service's /token, with `traces_to=`
    traced_metrics_url: str = ""
    traced_service_pid: int | None = None


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a second, HTTPS token service: its certificate and key, the CA its
    client certificates chain to (which also signed `cert`: readiness is checked with it)."""

    cert: Path
    key: Path
    client_ca: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    proc: subprocess.Popen[bytes],
    errfile: Path,
    what: str,
    ready: Callable[[], bool],
    expected: str,
) -> None:
    """Until `ready()`; SpawnError if `proc` exits first or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SpawnError(
                f"{what} exited with {proc.returncode}: "
                f"{errfile.read_text(errors='replace')[-2000:]}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise SpawnError(f"{what} did not {expected} within {START_TIMEOUT:.0f} s")


def _answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


def start(
    argv: list[str],
    env: dict[str, str],
    cores: list[int],
    errfile: Path,
) -> subprocess.Popen[bytes]:
    def pin_child() -> None:  # runs in the child between fork and exec
        if cores:
            os.sched_setaffinity(0, set(cores))

    with errfile.open("wb") as err:
        return subprocess.Popen(  # noqa: S603
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            preexec_fn=pin_child,
        )


def stop_process(
    proc: subprocess.Popen[Any],
    sig: int = signal.SIGTERM,
    timeout: float = 20.0,
    *,
    group: bool = False,
) -> None:
    """`sig`, then SIGKILL if the process is still there after `timeout` s; with `group`, then
    SIGKILL its whole process group too (children started with start_new_session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    from tests.servers import run_sync

    async def drop() -> None:
        conn = await asyncpg.connect(admin_url)
        try:  # the name is ours (tokensvc_bench_<hex>), not input
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    with contextlib.suppress(Exception):  # best effort: a throwaway server goes anyway
        run_sync(drop)


def plan_cores(service: str | None, other: str | None) -> tuple[list[int], list[int], str]:
    """Which cores the service (and floor) get, which everything else gets, and a note."""
    cores = cpu.available_cores()
    if len(cores) < 2 and service is None:
        return [], [], f"only {len(cores)} core available: nothing is pinned"
    service_cores = cpu.parse_cores(service) if service else [cores[0]]
    other_cores = (
        cpu.parse_cores(other) if other else [c for c in cores if c not in service_cores] or cores
    )
    return service_cores, other_cores, ""


# A fresh cluster has no WAL segments to recycle: at these write rates it creates one every
# ~6 s, and zero-filling its 16 MB (the default) stalled every commit for 60-120 ms (seen with a
# probe committing every 5 ms beside the kit), which is the open-loop p99 of code exchange and
# refresh. A long-running server recycles old segments instead, so the stall measures the
# cluster's age, not the service. fsync and durable commits are unchanged.
POSTGRES_SETTINGS = {"wal_init_zero": "off"}


@contextlib.contextmanager
def spawn(
    workdir: Path,
    *,
    workers: int = 1,
    service_cores: list[int] | None = None,
    other_cores: list[int] | None = None,
    redis_url: str | None = None,
    postgres_url: str | None = None,
    with_floor: bool = True,
    code_ttl: int = 3600,
    tls: TLSFiles | None = None,
    traces_to: str | None = None,
) -> Iterator[Stack]:
    """Start the stack; yields it and stops everything on the way out. With `tls`, also a
    second token service over HTTPS (`Stack.tls_token_url`), the same settings otherwise; with
    `traces_to` (an OTLP/HTTP endpoint), one with tracing on (`Stack.traced_token_url`) at
    TRACED_SAMPLER."""
    sys.path.insert(0, str(ROOT))
    from tests.servers import PostgresServer, RedisServer, create_database

    service_cores = service_cores or []
    other_cores = other_cores or []
    if other_cores:  # before starting Redis and Postgres: they inherit it
        os.sched_setaffinity(0, set(other_cores))
    workdir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with ExitStack() as stack:
        redis_pid = postgres_pid = None
        if redis_url is None:
            redis = stack.enter_context(RedisServer())
            redis_url = redis.url
            redis_pid = redis._proc.pid if redis._proc else None
        if postgres_url is None:
            pg = stack.enter_context(PostgresServer(settings=POSTGRES_SETTINGS))
            postgres_url = pg.url
            with contextlib.suppress(OSError, ValueError, IndexError):
                postgres_pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        db_name = f"tokensvc_bench_{secrets.token_hex(4)}"
        database_url = create_database(postgres_url, db_name)
        stack.callback(_drop_database, postgres_url, db_name)

        env = base_env()
        env["TOKENSVC_DATABASE_URL"] = database_url
        run_tokensvc(["migrate"], env, timeout=120, error=SpawnError)
        keys_file = workdir / "jwks.json"
        keys_file.write_text(
            run_tokensvc(["keys", "generate", "--alg", "ES256"], env, timeout=120, error=SpawnError)
        )
        keys_file.chmod(0o600)

        port, internal_port = free_port(), free_port()
        internal_token = secrets.token_urlsafe(32)
        issuer = f"http://127.0.0.1:{port}"
        env.update(
            {
                "TOKENSVC_ISSUER": issuer,
                "TOKENSVC_REDIS_URL": redis_url,
                "TOKENSVC_KEYS_FILE": str(keys_file),
                "TOKENSVC_INTERNAL_TOKEN": internal_token,
                "TOKENSVC_HOST": "127.0.0.1",
                "TOKENSVC_PORT": str(port),
                "TOKENSVC_INTERNAL_PORT": str(internal_port),
                "TOKENSVC_WORKERS": str(workers),
                "TOKENSVC_LOG_FORMAT": "json",
                # codes are minted ahead of the run: let them outlive preparation
                "TOKENSVC_CODE_TTL": str(code_ttl),
            }
        )
        errfile = workdir / "service.stderr"
        service = start([*tokensvc_command(), "serve", "token"], env, service_cores, errfile)
        # SIGINT: the service then skips its drain
        stack.callback(stop_process, service, signal.SIGINT, group=True)
        ready = f"http://127.0.0.1:{port}/readyz"
        wait_ready(
            service, errfile, "tokensvc serve token", lambda: _answers(ready), f"answer {ready}"
        )
        tls_url, tls_pid = "", None
        if tls is not None:
            tls_url, tls_pid = _start_tls_service(stack, env, tls, service_cores, workdir)
        traced_url, traced_pid = "", None
        if traces_to is not None:
            traced_url, traced_pid = _start_traced_service(
                stack, env, traces_to, service_cores, workdir
            )

        floor_pid: int | None = None
        floor_url = ""
        if with_floor:
            floor_url, floor_pid = stack.enter_context(local_floor(workdir, service_cores))

        yield Stack(
            token_url=f"{issuer}/token",
            internal_url=f"http://127.0.0.1:{internal_port}",
            internal_token=internal_token,
            metrics_url=f"http://127.0.0.1:{port}/metrics",
            database_url=database_url,
            keys_file=keys_file,
            floor_url=floor_url,
            service_pid=service.pid,
            floor_pid=floor_pid,
            redis_pid=redis_pid,
            postgres_pid=postgres_pid,
            workers=workers,
            service_cores=service_cores,
            other_cores=other_cores,
            notes=notes,
            redis_url=redis_url,
            issuer=issuer,
            tls_token_url=tls_url,
            tls_service_pid=tls_pid,
            traced_token_url=f"{traced_url}/token" if traced_url else "",
            traced_metrics_url=f"{traced_url}/metrics" if traced_url else "",
            traced_service_pid=traced_pid,
        )


def _start_second_service(
    stack: ExitStack,
    env: dict[str, str],
    cores: list[int],
    workdir: Path,
    what: str,
    context: ssl.SSLContext | None = None,
) -> tuple[str, int]:
    """Another `tokensvc serve token` with `env` (the first's, with its own settings) on ports
    of its own, stopped with `stack`: (its base URL, pid), once its /readyz answers."""
    port, internal_port = free_port(), free_port()
    env = {**env, "TOKENSVC_PORT": str(port), "TOKENSVC_INTERNAL_PORT": str(internal_port)}
    errfile = workdir / f"service-{what.split()[0].lower()}.stderr"
    proc = start([*tokensvc_command(), "serve", "token"], env, cores, errfile)
    stack.callback(stop_process, proc, signal.SIGINT, group=True)
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    ready = f"{base}/readyz"
    wait_ready(
        proc,
        errfile,
        f"tokensvc serve token ({what})",
        lambda: _answers(ready, context),
        f"answer {ready}",
    )
    return base, proc.pid


def _start_tls_service(
    stack: ExitStack, env: dict[str, str], tls: TLSFiles, cores: list[int], workdir: Path
) -> tuple[str, int]:
    """The token service over HTTPS: (its /token URL, pid), verified against the kit's CA."""
    tls_env = {
        **env,
        "TOKENSVC_TLS_CERT_FILE": str(tls.cert),
        "TOKENSVC_TLS_KEY_FILE": str(tls.key),
        "TOKENSVC_TLS_CLIENT_CA_FILE": str(tls.client_ca),
    }
    context = ssl.create_default_context(cafile=str(tls.client_ca))
    base, pid = _start_second_service(stack, tls_env, cores, workdir, "HTTPS", context)
    return f"{base}/token", pid


# What `cc_traced` measures: the sampler a busy deployment would run, 1% of new traces.
TRACED_SAMPLER = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
}


@contextlib.contextmanager
def traces_sink() -> Iterator[Any]:
    """An OTLP/HTTP receiver in this process for the traced service (tests/otlp.py, the one
    the tracing tests scan): it decodes and keeps what it gets, so the run can say how many
    spans were exported."""
    sys.path.insert(0, str(ROOT))
    from tests.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _start_traced_service(
    stack: ExitStack, env: dict[str, str], endpoint: str, cores: list[int], workdir: Path
) -> tuple[str, int]:
    """The token service with tracing on, exporting to `endpoint`: (its base URL, pid)."""
    traced_env = {
        **env,
        **TRACED_SAMPLER,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "tokensvc-bench-traced",
    }
    return _start_second_service(stack, traced_env, cores, workdir, "traced")


@contextlib.contextmanager
def local_floor(workdir: Path, cores: list[int]) -> Iterator[tuple[str, int]]:
    """Just the floor server, pinned to `cores`: (url, pid); stopped on the way out."""
    port = free_port()
    errfile = workdir / "floor.stderr"
    workdir.mkdir(parents=True, exist_ok=True)
    floor = start(
        [sys.executable, "-m", "benchmarks.floor", "--port", str(port)],
        {**base_env(), "PYTHONPATH": str(ROOT)},
        cores,
        errfile,
    )
    try:
        wait_ready(
            floor, errfile, "the floor server", lambda: listens(port), f"listen on port {port}"
        )
        yield f"http://127.0.0.1:{port}/token", floor.pid
    finally:
        stop_process(floor, signal.SIGTERM, group=True)
