"""What the kit's commands share: `python -m benchmarks` (cli.py), `python -m benchmarks soak`
(soak/cli.py) and `python -m benchmarks render` (render.py). The usage error and how a command
turns its failures into an exit status, the options the commands have in common, the facts
every report carries (commit, machine, how busy the cores were before the start, the command
line without its secrets), and writing a report's files. Nothing here imports a command: the
dependencies point from the commands to this module, never back."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks import cpu
from benchmarks.live import Live
from benchmarks.prepare import GRANTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_MIX = "client_credentials=60,refresh_token=30,authorization_code=10"
ALIASES = {
    "cc": "client_credentials",
    "code": "authorization_code",
    "refresh": "refresh_token",
    "federated_jwt": "cc_federated_jwt",
    "private_key_jwt": "cc_private_key_jwt",
    "resource": "cc_resource",
    "exchange": "token_exchange",
    "dpop": "cc_dpop",
    "traced": "cc_traced",
    "reused": "cc_reused",
}
BACKGROUND_BUSY = 0.15  # a core busier than this before the start gets a note
SECRET_OPTIONS = (
    "--client-secret",
    "--code-client-secret",
    "--internal-token",
    "--database-url",
    "--postgres-url",
    "--redis-url",
)


class UsageError(Exception):
    """Bad command line: one line, exit status 2."""


def run_command(
    prog: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """`body(args)`, with the commands' exit statuses: 2 and one line for a usage error, 1 and
    the message for a failure (PrepareError, SpawnError, WrkError ... are RuntimeErrors), 130
    on Ctrl-C (everything started is stopped by then: the `with` blocks have unwound)."""
    try:
        return body(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"{prog}: {' '.join(str(exc).split())[:2000]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; everything started was stopped", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- options


def mix_weights(text: str, names: Sequence[str] = GRANTS) -> dict[str, float]:
    """`--mix`: "client_credentials=60,refresh=30,..." -> {workload: weight}, each one of
    `names` (the grants for the soak; the load test also mixes its client-auth workloads)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = ALIASES.get(name.strip(), name.strip())
        if name not in names:
            raise UsageError(f"--mix: unknown {name!r}; choose from {', '.join(names)}")
        try:
            out[name] = float(weight)
        except ValueError:
            raise UsageError(f"--mix: bad weight in {part!r}") from None
    if sum(out.values()) <= 0:
        raise UsageError("--mix: the weights must add up to more than 0")
    return out


def add_cores_options(
    group: argparse._ArgumentGroup, service_help: str, generator_help: str
) -> None:
    """--spawn's --workers, --service-cores and --generator-cores."""
    group.add_argument("--workers", type=int, default=1, help="TOKENSVC_WORKERS (1)")
    group.add_argument("--service-cores", help=service_help)
    group.add_argument("--generator-cores", help=generator_help)


def add_postgres_url(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--postgres-url",
        help="use this Postgres (superuser URL; a fresh "
        "database is created and dropped) instead of a throwaway one",
    )


def add_internal_token(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--internal-token",
        default=os.environ.get("TOKENSVC_INTERNAL_TOKEN"),
        help="(or TOKENSVC_INTERNAL_TOKEN)",
    )


def add_output_options(parser: argparse.ArgumentParser, default_dir: str) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--out", help=f"output directory (default {default_dir})")
    out.add_argument("--quiet", action="store_true", help="no live progress")


def output_dir(out: str | None, started: dt.datetime, suffix: str = "") -> Path:
    """`--out`, or benchmarks/results/<UTC time><suffix>/; created."""
    path = Path(out) if out else RESULTS / f"{started.strftime('%Y-%m-%dT%H%M%SZ')}{suffix}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def redacted(argv: list[str]) -> list[str]:
    """The command line without secrets (they would end up in the report)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg in SECRET_OPTIONS:
            out.append(arg)
            hide_next = True
        elif arg.split("=", 1)[0] in SECRET_OPTIONS and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out


# --------------------------------------------------------------------------- facts


def utc_text(when: dt.datetime) -> str:
    """A time as the reports write it: "2026-11-22 01:44:13 UTC"."""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def now_text() -> str:
    return utc_text(dt.datetime.now(dt.UTC))


def _git(*args: str) -> str:
    result = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


def git_commit() -> str:
    """HEAD's short hash, "+ local changes" when tracked files differ from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (+ local changes)" if dirty else "")


def background_load(seconds: float = 1.0) -> dict[int, float]:
    """How busy each core is before we start anything (someone else's work shares them)."""
    before = cpu.core_ticks()
    time.sleep(seconds)
    after = cpu.core_ticks()
    if not before or not after:
        return {}
    return {
        core: (after[core][0] - before[core][0]) / max(1, after[core][1] - before[core][1])
        for core in after
        if core in before
    }


def busy_note(background: dict[int, float]) -> str | None:
    """A note when some core was busy before anything started, else None."""
    busy = {c: u for c, u in background.items() if u > BACKGROUND_BUSY}
    if not busy:
        return None
    return (
        "the machine was busy before the run started ("
        + ", ".join(f"core {c} {u:.0%}" for c, u in sorted(busy.items()))
        + "): other work shares these cores, the figures are less reliable"
    )


def note_background(notes: list[str], live: Live) -> dict[int, float]:
    """`background_load()`; a note (and a warning on the live output) when a core was busy."""
    background = background_load()
    busy = busy_note(background)
    if busy:
        notes.append(busy)
        live.say(f"warning: {busy}")
    return background


def background_json(background: dict[int, float]) -> dict[str, float]:
    """The reports' `background_busy`."""
    return {str(c): round(u, 3) for c, u in background.items()}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = os.cpu_count() or 1
    info = {
        "cpus": cores,
        "cpu_model": model or platform.processor() or "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    info["description"] = (
        f"{platform.node()}: {cores} cores ({info['cpu_model']}), "
        f"Linux {info['kernel']}, Python {info['python']}"
    )
    return info


# --------------------------------------------------------------------------- output


def write_report(outdir: Path, data: dict[str, Any], text: str, page: str) -> None:
    """report.json, summary.txt and report.html in `outdir`; the summary on stdout. Only the
    first two are committed (benchmarks/results/.gitignore): `python -m benchmarks render`
    makes the page again from report.json."""
    (outdir / "report.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    (outdir / "summary.txt").write_text(text + "\n")
    (outdir / "report.html").write_text(page)
    print(text)
    print(f"\nreport: {outdir / 'report.json'}  plot: {outdir / 'report.html'}")
