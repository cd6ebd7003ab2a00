"""The login front-end holds no keys and no code store: it imports nothing from signing,
grants or the code stores, neither at import time nor lazily inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tokensvc.login

FORBIDDEN = (
    "tokensvc.signing",
    "tokensvc.grants",
    "tokensvc.storage.redis_codes",
    "tokensvc.storage.memory_codes",
    "tokensvc.storage.stores",
    "tokensvc.service",
    "tokensvc.http.apps",
    "tokensvc.http.appkeys",
    "tokensvc.http.token",
)
LOGIN_DIR = Path(tokensvc.login.__file__).parent


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_forbidden_import_statement_anywhere_in_the_package() -> None:
    files = sorted(LOGIN_DIR.rglob("*.py"))
    assert len(files) >= 8
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if _forbidden(n)]
    assert offenders == []


def test_running_the_login_service_loads_no_forbidden_module() -> None:
    code = (
        "import sys, tokensvc.login.serve, tokensvc.login.app, tokensvc.login.views;"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('tokensvc'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "tokensvc.login.views" in out
    assert [m for m in out if _forbidden(m)] == []


def test_the_check_would_catch_a_violation() -> None:
    assert _forbidden("tokensvc.signing.keys") and _forbidden("tokensvc.grants")
    assert not _forbidden("tokensvc.signingx") and not _forbidden("tokensvc.storage.postgres")
