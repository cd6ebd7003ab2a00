"""`tokensvc.storage.protocols` is the one index of store contracts: every store protocol of
the package is listed there with its backends and its contract suite, and each suite exists
and exercises every backend the index names."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import tokensvc
from tokensvc.storage import protocols

PACKAGE = Path(tokensvc.__file__).parent
SUITES = Path(__file__).parents[1] / "contract"
ENTRY = re.compile(
    r"^\* (?P<names>(?:`\w+`(?: \(`[\w.]+`\))?,? ?)+)[^*]*?\(`(?P<suite>test_\w+\.py)`\)",
    re.M | re.S,
)
# How a suite names a backend in its fixture parameters or test ids.
BACKEND_IDS = {
    "memory": "memory",
    "Redis": "redis",
    "Redis Cluster": "redis-cluster",
    "Sentinel": "redis-sentinel",
    "Postgres": "postgres",
}


def _protocols_in_package() -> set[str]:
    """Every Protocol of the store layers (`storage/`, `limits/`)."""
    found = set()
    paths = [*(PACKAGE / "storage").rglob("*.py"), *(PACKAGE / "limits").rglob("*.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "Protocol" for base in node.bases
            ):
                found.add(node.name)
    return found


def _index() -> dict[str, tuple[str, str]]:
    """protocol name -> (its index entry, its suite file)."""
    doc = protocols.__doc__ or ""
    entries: dict[str, tuple[str, str]] = {}
    for match in ENTRY.finditer(doc):
        for name in re.findall(r"`(\w+)`", match["names"]):
            if not name.islower():  # module paths in parentheses are lower case
                entries[name] = (match[0], match["suite"])
    return entries


def test_every_store_protocol_is_in_the_index() -> None:
    declared = _protocols_in_package()
    assert len(declared) >= 10
    assert declared <= set(_index()), declared - set(_index())


def _collected_ids(suites: set[str]) -> dict[str, str]:
    """suite file -> the ids of every test pytest collects from it, one per line."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + [str(SUITES / s) for s in sorted(suites)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    ids: dict[str, str] = {s: "" for s in suites}
    for line in out.splitlines():
        for suite in suites:
            if f"/{suite}::" in line:
                ids[suite] += line + "\n"
    return ids


def test_each_protocol_has_a_suite_that_runs_every_backend_it_lists() -> None:
    index = _index()
    for name, (_, suite) in index.items():
        assert (SUITES / suite).is_file(), f"{name}: {suite} does not exist"
    collected = _collected_ids({suite for _, suite in index.values()})
    for name, (entry, suite) in index.items():
        backends = entry.split(":", 1)[1]
        for label, backend_id in BACKEND_IDS.items():
            if re.search(rf"\b{label}\b(?! Cluster)", backends):
                ran = re.search(
                    rf"[\[-]{re.escape(backend_id)}(?:\]|-(?!cluster|sentinel))", collected[suite]
                )
                assert ran, f"{name}: {suite} runs no test on {label}"


def test_the_index_check_would_catch_a_missing_protocol() -> None:
    assert "GrantStore" in _index() and "DenyList" in _index()
    assert "NoSuchStore" not in _index()
