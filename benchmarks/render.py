"""`python -m benchmarks render REPORT [REPORT ...] [-o OUT.html]`: the HTML page of a
report.json, the same page a run writes next to it: a load test's (schema `tokensvc-bench/1`,
benchmarks/report.py's table and benchmarks/plot.py's charts) or a soak's (`tokensvc-soak/1`,
benchmarks/soak/render.py). Committed results keep only report.json and summary.txt; the page
is made again from the JSON.

    python -m benchmarks render benchmarks/results/2026-11-22T014413Z/report.json
    python -m benchmarks render benchmarks/results/*/         # every run, each page beside it
    python -m benchmarks render RUN/report.json -o /tmp/run.html    # or -o - for stdout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from benchmarks import plot, report
from benchmarks.common import UsageError, run_command
from benchmarks.soak import render as soak_render

SCHEMAS = (report.SCHEMA, soak_render.SCHEMA)


def text_and_page(data: dict[str, Any]) -> tuple[str, str]:
    """(summary.txt's text, report.html) of a report, whichever of the kit's it is."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == report.SCHEMA:
        text = report.table(data)
        return text, plot.page(data, text)
    if schema == soak_render.SCHEMA:
        text = soak_render.text(data)
        return text, soak_render.page(data, text)
    raise UsageError(f"schema {schema!r} is not one of the kit's ({', '.join(SCHEMAS)})")


def page(path: Path) -> str:
    """The HTML page of the report.json at `path` (or in the directory `path`)."""
    if path.is_dir():
        path = path / "report.json"
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    try:
        return text_and_page(data)[1]
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks render",
        description="Write the HTML page of a benchmark or soak report.json (charts, no "
        "scripts), as the run that made it did.",
    )
    p.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT",
        help="a report.json, or a results directory holding one",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.html",
        help="where the page goes, '-' for stdout (one REPORT only; default: report.html "
        "next to the report.json, which benchmarks/results/.gitignore keeps out of git)",
    )
    return p


def _main(args: argparse.Namespace) -> int:
    if args.output and len(args.reports) > 1:
        raise UsageError("-o/--output takes one REPORT; without it each page goes beside its JSON")
    for name in args.reports:
        source = Path(name)
        html = page(source)
        if args.output == "-":
            sys.stdout.write(html)
            continue
        json_path = source / "report.json" if source.is_dir() else source
        out = Path(args.output) if args.output else json_path.with_name("report.html")
        out.write_text(html)
        print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command("benchmarks render", _main, args)


if __name__ == "__main__":
    sys.exit(main())
