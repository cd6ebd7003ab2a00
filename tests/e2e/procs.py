"""Helpers of the process-level tests (the command line, rotation with SIGHUP, workers, graceful
shutdown, faults): run `tokensvc` commands, start long-running `tokensvc` processes, signal and
wait for them, and always clean up (the whole process group); throwaway databases; HTTP.

Test modules import these from here; this module imports no test module.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from tests.servers import create_database, free_port, run_sync

INTERNAL_TOKEN = "e2e-internal-token-0123456789abcdef"
RUN_TIMEOUT = 30.0  # seconds for one short command
START_TIMEOUT = 20.0  # seconds for a service to answer
STOP_TIMEOUT = 5.0  # seconds for a service to exit after a signal


# --------------------------------------------------------------------------- commands


def _tokensvc_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m tokensvc`."""
    script = Path(sys.executable).with_name("tokensvc")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("tokensvc")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "tokensvc"]


TOKENSVC = _tokensvc_command()


def base_env(**settings: str) -> dict[str, str]:
    """The test's environment without any TOKENSVC_ or OTEL_ variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSVC_", "OTEL_"))}
    env.update(settings)
    return env


def service_env(keys_file: Path, **settings: str) -> dict[str, str]:
    """`serve token` on free loopback ports with `keys_file` and JSON logs; `settings` add to
    or replace these. No drain default: a test that stops the service and cares how long that
    takes says so with TOKENSVC_DRAIN_SECONDS (the service's own default is a few seconds)."""
    port = settings.pop("TOKENSVC_PORT", None) or str(free_port())
    defaults = {
        "TOKENSVC_ISSUER": f"http://127.0.0.1:{port}",
        "TOKENSVC_KEYS_FILE": str(keys_file),
        "TOKENSVC_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "TOKENSVC_HOST": "127.0.0.1",
        "TOKENSVC_PORT": port,
        "TOKENSVC_INTERNAL_PORT": str(free_port()),
        "TOKENSVC_LOG_FORMAT": "json",
    }
    return base_env(**{**defaults, **settings})


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line on stdout, got {self.stdout!r}"
        return json.loads(lines[0])

    def ok(self) -> Result:
        assert self.returncode == 0, f"exit {self.returncode}: {self.stderr}"
        return self

    def bad_input(self) -> str:
        """SPEC: a one-line error on stderr, exit status 2, nothing on stdout."""
        assert self.returncode == 2, f"exit {self.returncode}: {self.stderr}"
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.stderr!r}"
        assert "Traceback" not in self.stderr
        assert self.stdout == ""
        return lines[0]


def run(args: Sequence[str], env: dict[str, str], stdin: str | None = None) -> Result:
    done = subprocess.run(
        [*TOKENSVC, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def add_client(env: dict[str, str], name: str, grant_types: Sequence[str], *flags: str) -> Any:
    """`tokensvc client add --name NAME`, a `--grant-type` for each of `grant_types`, then
    `flags`: the JSON it prints, with `client_id` (and `client_secret` unless `--public`)."""
    args = ["client", "add", "--name", name]
    for grant_type in grant_types:
        args += ["--grant-type", grant_type]
    return run([*args, *flags], env).ok().json()


def add_machine_client(env: dict[str, str], *flags: str, name: str = "Machine") -> Any:
    """`tokensvc client add` of a confidential `client_credentials` client (plus `flags`):
    the JSON it prints, with `client_id` and `client_secret`."""
    return add_client(env, name, ["client_credentials"], *flags)


def add_web_client(
    env: dict[str, str], name: str, redirect_uri: str, scope: str, *grant_types: str
) -> Any:
    """`tokensvc client add` of a confidential client of code exchanges and refreshes (and of
    `grant_types`) for `redirect_uri` and `scope`: the JSON it prints."""
    grants = ["authorization_code", "refresh_token", *grant_types]
    return add_client(env, name, grants, "--redirect-uri", redirect_uri, "--scope", scope)


def write_keys(workdir: Path, *flags: str) -> Path:
    """`tokensvc keys generate` (plus `flags`) into `workdir`/jwks.json: the keys file of a
    service (TOKENSVC_KEYS_FILE)."""
    keys_file = workdir / "jwks.json"
    keys_file.write_text(run(["keys", "generate", *flags], base_env()).ok().stdout)
    return keys_file


# --------------------------------------------------------------------------- databases


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return run_sync(fetch)


def drop_database(admin_url: str, name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the Postgres of `admin_url`, dropped afterwards."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@contextmanager
def migrated_database(admin_url: str) -> Iterator[str]:
    """`fresh_database`, migrated by `tokensvc migrate`."""
    with fresh_database(admin_url) as url:
        run(["migrate"], base_env(TOKENSVC_DATABASE_URL=url)).ok()
        yield url


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    *,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    body = urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.headers, exc.read())


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# --------------------------------------------------------------------------- processes


class Proc:
    """A `tokensvc` process in a process group of its own, its output in files (no pipe can
    fill up)."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], workdir: Path, name: str = "service"
    ) -> None:
        self.stdout_path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*TOKENSVC, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.strip()]

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(
                f"tokensvc exited with {self.proc.returncode}:\n{self.stderr()}\n"
                f"{self.stdout()[-3000:]}"
            )

    def wait_http(self, url: str, timeout: float = START_TIMEOUT) -> Reply:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                return http(url, timeout=1.0)
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"{url} did not answer within {timeout}s:\n{self.stderr()}")

    def wait_stdout(
        self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.stdout())
            if match is not None:
                return match
            self._check_alive()
            time.sleep(0.05)
        pytest.fail(
            f"no {pattern.pattern!r} on stdout within {timeout}s:\n"
            f"{self.stdout()[-3000:]}\n{self.stderr()}"
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tokensvc did not exit within {timeout}s:\n{self.stdout()[-3000:]}")

    def stop(self, sig: signal.Signals, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and return the exit status; fails if the exit takes longer than `timeout`."""
        self.signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """Whatever happened: nothing of this process group outlives the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def reaped(pid: int) -> bool:
    """True once `pid` is gone entirely. (A killed multi-threaded process shows as a zombie
    while its other threads still exit and its sockets are still open.)"""
    return not Path(f"/proc/{pid}").exists()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
