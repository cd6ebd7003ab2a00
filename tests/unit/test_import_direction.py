"""Dependencies point one way (README, *Layout*):

    base (models, errors, opaque, config, ...) -> storage | limits | signing -> service |
    admin -> clientauth | grants -> http | login -> wiring -> cli

A module may import its own layer or any layer below, never one above, and the three store
layers do not import each other. The login front-end holds no keys and no code store: it
imports nothing from signing, grants, clientauth, the token service's runtime or apps, or the
code stores. Every import statement counts, at module level or lazily inside a function.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tokensvc

PACKAGE = Path(tokensvc.__file__).parent

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "tokensvc",
        "tokensvc.models",
        "tokensvc.errors",
        "tokensvc.opaque",
        "tokensvc.config",
        "tokensvc.expiring",
        "tokensvc.forwarded",
        "tokensvc.pkce",
        "tokensvc.scope",
        "tokensvc.claims",
        "tokensvc.logs",
        "tokensvc.metrics",
        "tokensvc.readiness",
        "tokensvc.inprocess",
        "tokensvc.digits",
        "tokensvc.jsonshape",
        "tokensvc.publickeys",
        "tokensvc.redis_client",
        "tokensvc.registration",
        "tokensvc.passwords",
        "tokensvc.authzrequest",
        "tokensvc.background",
        "tokensvc.instrumented",
        "tokensvc.tracing",
    ),
    ("tokensvc.storage", "tokensvc.limits", "tokensvc.signing"),
    ("tokensvc.service", "tokensvc.admin"),
    ("tokensvc.clientauth", "tokensvc.grants", "tokensvc.accesstoken", "tokensvc.logout"),
    ("tokensvc.http", "tokensvc.login"),
    ("tokensvc.wiring",),
    ("tokensvc.cli", "tokensvc.workers", "tokensvc.__main__"),
)
# Siblings that stay apart although they share a layer.
APART = (
    ("tokensvc.storage", "tokensvc.limits"),
    ("tokensvc.storage", "tokensvc.signing"),
    ("tokensvc.limits", "tokensvc.signing"),
    ("tokensvc.http", "tokensvc.login"),  # the login front-end may use http's plumbing only
)
# What the login front-end may use of `tokensvc.http`: its server and response plumbing.
LOGIN_MAY_USE = (
    "tokensvc.http.server",
    "tokensvc.http.middleware",
    "tokensvc.http.responses",
    "tokensvc.http.forms",
)
LOGIN_FORBIDDEN = (
    "tokensvc.admin",
    "tokensvc.logout",
    "tokensvc.signing",
    "tokensvc.grants",
    "tokensvc.clientauth",
    "tokensvc.accesstoken",
    "tokensvc.service",
    "tokensvc.storage.redis_codes",
    "tokensvc.storage.memory_codes",
    "tokensvc.wiring",
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(_within(module, prefix) for prefix in prefixes)


def _owner(module: str) -> tuple[int, str]:
    """The layer index of `module` and the prefix that placed it there."""
    best: tuple[int, str] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(module, prefix) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS")
    return best


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str) -> Iterator[str]:
    """Every tokensvc module `path` imports (absolute or relative, anywhere in the file)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from tokensvc.grants import rotation` imports tokensvc.grants.rotation; a name
            # that is no module resolves to its package in `_known`
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from (name for name in names if _within(name, "tokensvc"))


def _known(name: str, modules: set[str]) -> str | None:
    """The module `name` refers to (`from pkg import obj` names an object, not a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def violations(root: Path) -> list[str]:
    """Every import under the package at `root` that breaks the layering rules."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    found = []
    for module, path in files.items():
        layer, prefix = _owner(module)
        for imported in {_known(n, set(files)) for n in imports_of(path, module)} - {None}:
            assert imported is not None
            target_layer, target_prefix = _owner(imported)
            if target_layer > layer:
                found.append(f"{module} imports {imported}: upward")
            elif {prefix, target_prefix} in ({a, b} for a, b in APART) and not (
                _within(module, "tokensvc.login") and _under(imported, LOGIN_MAY_USE)
            ):
                found.append(f"{module} imports {imported}: {target_prefix} is a sibling")
            if _within(module, "tokensvc.login") and _under(imported, LOGIN_FORBIDDEN):
                found.append(f"{module} imports {imported}: the login front-end must not")
    return found


def test_every_module_is_in_a_layer() -> None:
    modules = [module_name(PACKAGE, p) for p in PACKAGE.rglob("*.py")]
    assert len(modules) > 60
    for module in modules:
        _owner(module)  # raises for a module nobody placed


def test_dependencies_point_one_way() -> None:
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("into", "line", "expected"),
    [
        ("storage/memory.py", "from tokensvc.grants import REGISTRY", "upward"),
        ("limits/buckets.py", "import tokensvc.http.token", "upward"),
        ("storage/redis_codes.py", "from tokensvc.login import views", "upward"),
        ("storage/cache.py", "from tokensvc.limits import lockout", "sibling"),
        ("grants/common.py", "from tokensvc.wiring.stores import open_stores", "upward"),
        ("login/views.py", "from tokensvc.signing.keys import KeySet", "must not"),
        ("login/views.py", "from tokensvc.storage.redis_codes import RedisCodes", "must not"),
        ("login/views.py", "from tokensvc.http.token import token", "sibling"),
        ("login/pages.py", "from ..grants import rotation", "must not"),
        ("storage/denylist.py", "from ..http import forms", "upward"),
    ],
)
def test_a_planted_import_is_caught(tmp_path: Path, into: str, line: str, expected: str) -> None:
    """The same check on a copy of the package with one bad import added, inside a function
    (a lazy import is an import too)."""
    copy = tmp_path / "tokensvc"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "schema"))
    target = copy / into
    target.write_text(
        target.read_text(encoding="utf-8") + f"\n\ndef _planted() -> None:\n    {line}\n"
    )
    found = violations(copy)
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(module_name(copy, target))


def test_running_the_login_service_loads_no_forbidden_module() -> None:
    """What the import statements promise holds for the running process too."""
    code = (
        "import sys, tokensvc.login.serve, tokensvc.login.app, tokensvc.login.views;"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('tokensvc'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "tokensvc.login.views" in out
    assert [m for m in out if _under(m, LOGIN_FORBIDDEN)] == []
