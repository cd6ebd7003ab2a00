"""The kit run as its users run it, for the tests here: `python -m benchmarks ...` in a child
process from the repository root, and the options of a throwaway stack on the session's Redis
and Postgres."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_kit(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python -m benchmarks ARGS`, its output captured; it may fail (check returncode)."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawned(redis_url: str, postgres_admin_url: str, out: Path) -> list[str]:
    """--spawn on these servers (a fresh database), the report in `out`, no live progress."""
    return [
        "--spawn",
        "--redis-url",
        redis_url,
        "--postgres-url",
        postgres_admin_url,
        "--out",
        str(out),
        "--quiet",
    ]
