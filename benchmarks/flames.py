"""A py-spy flame graph (`--profile`) as text: where the service's samples fell, by module and
by frame, self time only (a frame's own samples, not its callees').

The SVGs stay on the machine that made them (`benchmarks/results/.gitignore`); this summary
is small enough to commit next to the run, so that a profile at the start of a piece of work
and one at its end can be compared line by line. `python -m benchmarks flames SVG...` prints
it for flame graphs made earlier.
"""

from __future__ import annotations

import html
import re
import sys
from collections import Counter
from pathlib import Path

# inferno's frames: <g><title>NAME (N samples, P%)</title><rect ... y="Y" ... fg:x="X" fg:w="W"/>
_FRAME = re.compile(
    r'<g><title>(?P<title>.*?)</title><rect [^>]*?y="(?P<y>\d+)"[^>]*?'
    r'fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"'
)
_NAME = re.compile(r"^(?P<name>.*) \([\d,]+ samples?, [\d.]+%\)$")
_MODULE = re.compile(r"\((?P<file>[^():]+?)(?::\d+)?\)$")
ROW_HEIGHT = 16  # a callee's row is one below its caller's


def self_samples(svg: str) -> tuple[int, Counter[str]]:
    """Total samples and each frame's own samples (`name (file:line)` as py-spy names it)."""
    frames = []
    for m in _FRAME.finditer(svg):
        named = _NAME.match(html.unescape(m["title"]))
        if named:
            frames.append((int(m["y"]), int(m["x"]), int(m["w"]), named["name"]))
    if not frames:
        return 0, Counter()
    by_row: dict[int, list[tuple[int, int]]] = {}
    for y, x, w, _ in frames:
        by_row.setdefault(y, []).append((x, w))
    top = min(by_row)
    total = sum(w for _, w in by_row[top])
    own: Counter[str] = Counter()
    for y, x, w, name in frames:
        if y == top:
            continue  # "all"
        callees = sum(cw for cx, cw in by_row.get(y + ROW_HEIGHT, ()) if x <= cx < x + w)
        own[name] += w - callees
    return total, own


def module_of(frame: str) -> str:
    found = _MODULE.search(frame)
    return found["file"] if found else frame


def summary(svg: str, name: str, frames: int = 30, modules: int = 20) -> str:
    total, own = self_samples(svg)
    lines = [f"py-spy profile of the service: {name}, {total:,} samples (self time)"]
    if not total:
        return lines[0] + "\n"
    by_module: Counter[str] = Counter()
    for frame, samples in own.items():
        by_module[module_of(frame)] += samples
    lines.append("")
    lines.append("by module")
    lines += [f"{100 * n / total:6.2f}%  {m}" for m, n in by_module.most_common(modules)]
    lines.append("")
    lines.append("by frame")
    lines += [f"{100 * n / total:6.2f}%  {f}" for f, n in own.most_common(frames)]
    return "\n".join(lines) + "\n"


def summary_of(svg_path: Path) -> str:
    """The summary of `profile-X.svg`, named X."""
    return summary(svg_path.read_text(), svg_path.stem.removeprefix("profile-"))


def write_summary(svg_path: Path) -> Path | None:
    """`profile-X.svg` -> `profile-X.txt` beside it; None when py-spy wrote no graph."""
    if not svg_path.exists():
        return None
    out = svg_path.with_suffix(".txt")
    out.write_text(summary_of(svg_path))
    return out


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m benchmarks flames PROFILE.svg...", file=sys.stderr)
        return 2
    for path in paths:
        sys.stdout.write(summary_of(Path(path)))
    return 0
