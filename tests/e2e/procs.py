"""Long-running `tokensvc` processes for the process-level tests (rotation with SIGHUP, workers,
graceful shutdown): start, signal, wait, and always clean up (the whole process group)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import (
    INTERNAL_TOKEN,
    TOKENSVC,
    Reply,
    base_env,
    drop_database,
    http,
    run,
    service_env,
)
from tests.servers import create_database

# What the process-level tests import from here; the environment helpers live in test_cli.
__all__ = [
    "INTERNAL_TOKEN",
    "START_TIMEOUT",
    "Proc",
    "alive",
    "basic",
    "jwt_header",
    "migrated_database",
    "parent_of",
    "reaped",
    "service_env",
    "wait_for",
]

START_TIMEOUT = 20.0


class Proc:
    """A `tokensvc` process in a process group of its own, its output in files."""

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

    def wait_http(self, url: str, timeout: float = START_TIMEOUT) -> Reply:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"tokensvc exited with {self.proc.returncode}:\n{self.stderr()}\n"
                    f"{self.stdout()[-3000:]}"
                )
            try:
                return http(url, timeout=1.0)
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"{url} did not answer within {timeout}s:\n{self.stderr()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tokensvc did not exit within {timeout}s:\n{self.stdout()[-3000:]}")

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


def jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@contextmanager
def migrated_database(admin_url: str) -> Iterator[str]:
    name = f"e2e_proc_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        run(["migrate"], base_env(TOKENSVC_DATABASE_URL=url)).ok()
        yield url
    finally:
        drop_database(admin_url, name)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}
