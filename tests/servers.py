"""Throwaway Redis and Postgres servers for the test suite.

The suite runs against real servers rather than fakes so that durability,
reconnects and store outages are exercised for real.  Every server gets its
own temporary directory and a free loopback port, so the tests never touch the
machine's own Redis/Postgres on 6379/5432, and every server is torn down at
interpreter exit, even when pytest is interrupted.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "Lifecycle",
    "PostgresServer",
    "RedisServer",
    "create_database",
    "create_database_async",
    "find_binary",
    "free_port",
    "run_sync",
    "stop_process",
]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds to wait for a server to become ready
_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_LOG_TAIL_LINES = 30
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM a server we started and wait for it; SIGKILL it if it takes longer."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _port_in_use(port: int) -> bool:
    """True if something already accepts connections on the loopback port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Last lines of a server log, for error messages that explain a failed start."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _pg_bin_dirs() -> list[str]:
    """Debian's versioned Postgres bin dirs, highest version first."""

    def version(bin_dir: str) -> tuple[int, ...]:
        name = Path(bin_dir).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return sorted(glob.glob(_PG_BIN_GLOB), key=version, reverse=True)


def _lookup(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for bin_dir in _pg_bin_dirs():
        candidate = os.path.join(bin_dir, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


_apt_lock = threading.Lock()
_apt_updated = False


def _apt_install(package: str) -> None:
    """Install a Debian package; `apt-get update` runs at most once per process."""
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _apt_lock:
        commands = [] if _apt_updated else [["apt-get", "update", "-qq"]]
        commands.append(["apt-get", "install", "-y", "-qq", package])
        for command in commands:
            result = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
                raise RuntimeError(
                    f"`{shlex.join(command)}` failed (exit {result.returncode}); "
                    f"install the Debian package {package!r} by hand.\n{tail}"
                )
            if command[1] == "update":
                _apt_updated = True


def find_binary(name: str, package: str, *, install: bool = True) -> str:
    """Locate a server binary, installing its Debian package as a last resort.

    Looks on PATH, then in /usr/lib/postgresql/*/bin (Debian keeps the Postgres
    server binaries off PATH).  When running as root with apt-get available
    (CI containers) and ``install`` is true, installs ``package`` and looks again.
    """
    found = _lookup(name)
    if found is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install(package)
        found = _lookup(name)
    if found is None:
        raise RuntimeError(
            f"{name!r} not found on PATH or in {_PG_BIN_GLOB}; "
            f"install the Debian package {package!r} (apt-get install {package})"
        )
    return found


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run initdb/postgres as, or None when we are not root.

    Both programs refuse to run as root, so as root we drop to `postgres`
    (or `nobody` when that user does not exist).
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(
        "running as root but neither a 'postgres' nor a 'nobody' user exists; "
        "initdb/postgres refuse to run as root"
    )


# --------------------------------------------------------------------------- cleanup

_live: set[_Server] = set()  # servers whose process or temp dir may still exist


def _close_all() -> None:
    """Tear down every server still alive; runs at exit and on SIGTERM/SIGHUP."""
    for server in list(_live):
        try:
            server.close()
        except Exception:  # noqa: S112 - best effort at exit, keep closing the others
            continue


def _on_fatal_signal(signum: int, _frame: FrameType | None) -> None:
    """Clean up, then die from the same signal (atexit does not run on signals)."""
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Route SIGTERM/SIGHUP through cleanup unless someone else already handles them."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_fatal_signal)


atexit.register(_close_all)


# --------------------------------------------------------------------------- servers


class Lifecycle:
    """`with` for what starts and closes: `start()` on the way in, `close()` on the way out,
    and `close()` too when `start()` fails half-way (nothing it started is left running)."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Server(Lifecycle):
    """Lifecycle shared by both servers: start/stop/restart on a fixed port, close."""

    url: str

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.dir: Path | None = None  # created on first start, removed by close()

    def _make_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"tokensvc-{type(self).__name__.lower()}-"))

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server process, keeping its directory so restart() can reuse it."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the server and block until it accepts requests."""
        if self.dir is None:
            self.dir = self._make_dir()
        _live.add(self)
        _install_signal_handlers()
        if _port_in_use(self.port):
            raise RuntimeError(f"{type(self).__name__}: port {self.port} is already in use")
        self._start()
        return self

    def restart(self) -> Self:
        """Start again on the same port (and data dir); stops first if running."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its temporary directory."""
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            _live.discard(self)


class _ProcessServer(_Server):
    """A server that is one child process of ours (Redis, PgBouncer): started by `_start`,
    which waits with `_wait_ready`; `stop()` SIGTERMs it."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's log, whose tail explains a failed start."""
        raise NotImplementedError

    def _wait_ready(self, program: str, ready: Callable[[], bool], *, waiting_for: str) -> None:
        """Block until `ready()`; if the process exits first or START_TIMEOUT passes, stop it
        and raise RuntimeError with the tail of its log."""
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                problem = f"{program} exited with {self._proc.returncode} during start"
                break
            if ready():
                return
            time.sleep(0.01)
        else:
            problem = f"{program} did not {waiting_for} within {START_TIMEOUT:.0f}s"
        self.stop()
        raise RuntimeError(f"{problem} on port {self.port}; log tail:\n{_log_tail(self.log_path)}")

    def stop(self) -> None:
        """Terminate the process and wait for it (SIGKILL if it takes too long)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)


class RedisServer(_ProcessServer):
    """A private, non-persistent redis-server on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.url = f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "redis.log"

    def _argv(self, binary: str) -> list[str]:
        """The command line; subclasses (cluster nodes, sentinels) extend it."""
        assert self.dir is not None
        return [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def _start(self) -> None:
        assert self.dir is not None
        argv = self._argv(find_binary("redis-server", "redis-server"))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready("redis-server", self._ping, waiting_for="answer PING")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL redis-server, as a crash would (nothing it held survives: no persistence);
        `start()` brings it back empty on the same port."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class PostgresServer(_Server):
    """A private Postgres cluster (fsync and synchronous_commit on) on a free port.

    The superuser is `postgres` with trust authentication over 127.0.0.1; the
    unix socket lives in the server's temp dir, not in /var/run/postgresql.
    """

    def __init__(self, port: int | None = None, settings: Mapping[str, str] | None = None) -> None:
        """`settings`: more `-c name=value` server settings (the benchmark kit's)."""
        super().__init__(port)
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self._settings = dict(settings or {})
        self._user = _unprivileged_user()
        self._initialised = False
        self._running = False

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "postgres.log"

    def _make_dir(self) -> Path:
        # As root, the dir must belong to (and its parents be traversable by) the
        # unprivileged user, so use /tmp rather than a possibly private $TMPDIR.
        parent = "/tmp" if self._user else None
        path = Path(tempfile.mkdtemp(prefix="tokensvc-pg-", dir=parent))
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
        return path

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a Postgres tool, as the unprivileged user when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        user = self._user
        return subprocess.run(
            argv,
            env=env,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,  # drop root's supplementary groups
        )

    def _start(self) -> None:
        assert self.dir is not None
        pg_ctl = find_binary("pg_ctl", "postgresql")
        # initdb must match pg_ctl's version: prefer the sibling binary.
        initdb = os.path.join(os.path.dirname(os.path.realpath(pg_ctl)), "initdb")
        if not os.access(initdb, os.X_OK):
            initdb = find_binary("initdb", "postgresql")
        if not self._initialised:
            argv = [initdb, "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--locale=C"]  # fmt: skip
            result = self._run(argv)
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
            self._initialised = True
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {shlex.quote(str(self.dir))}",
                f"-c listen_addresses={HOST}",
                "-c fsync=on",
                "-c synchronous_commit=on",
                *(f"-c {name}={shlex.quote(value)}" for name, value in self._settings.items()),
            ]
        )
        self._running = True  # set first, so a half-started server still gets stopped
        result = self._run(
            [pg_ctl, "-D", str(self.data_dir), "-o", options, "-w",
             "-t", str(int(START_TIMEOUT)), "-l", str(self.log_path), "start"],
            timeout=START_TIMEOUT + 5,
        )  # fmt: skip
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"postgres did not start on port {self.port}: {result.stdout}{result.stderr}\n"
                f"log tail:\n{_log_tail(self.log_path)}"
            )

    def stop(self) -> None:
        """Fast shutdown (clean checkpoint, so committed data survives restart)."""
        if not self._running:
            return
        pg_ctl = find_binary("pg_ctl", "postgresql")
        for mode in ("fast", "immediate"):
            try:
                result = self._run(
                    [pg_ctl, "-D", str(self.data_dir), "stop", "-m", mode, "-w", "-t", "30"],
                    timeout=35,
                )
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 0 or "Is server running?" in result.stderr:
                break
        self._kill_leftover_postmaster()
        self._running = False

    def crash(self) -> None:
        """Immediate shutdown: every server process quits at once, without a checkpoint, as
        after a crash; `start()` then replays the WAL (committed data must survive it)."""
        if not self._running:
            return
        pg_ctl = find_binary("pg_ctl", "postgresql")
        stopped = False
        try:
            result = self._run(
                [pg_ctl, "-D", str(self.data_dir), "stop", "-m", "immediate", "-w", "-t", "30"],
                timeout=35,
            )
            stopped = result.returncode == 0
        finally:
            if not stopped:
                self._kill_leftover_postmaster()
            self._running = False

    def _kill_leftover_postmaster(self) -> None:
        """Last resort if pg_ctl could not stop it: SIGKILL the pid in postmaster.pid."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- databases

_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def create_database_async(admin_url: str, name: str) -> str:
    """Create an empty database ``name`` (dropping any leftover one) and return its URL."""
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name must match {_DB_NAME.pattern}: {name!r}")
    conn = await asyncpg.connect(admin_url)
    try:
        # Identifiers cannot be bound as parameters; the name is validated above.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(admin_url, name)


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, on a private loop and thread, so
    it works with or without a running event loop (e.g. from module-scoped fixtures)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def create_database(admin_url: str, name: str) -> str:
    """Synchronous create_database_async."""
    return run_sync(lambda: create_database_async(admin_url, name))
