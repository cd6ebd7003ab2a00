"""Running one of the interop scripts of `tests/interop/node` with the machine's Node.js,
credentials in its environment (not on its command line, where `ps` shows them)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.harness import Harness

NODE_DIR = Path(__file__).with_name("node")
NODE_TIMEOUT = 30.0  # seconds for a whole script (a few requests)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: the interop tests need Node.js 20 or newer")
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(
            f"{NODE_DIR}/node_modules is missing: run ./scripts/test "
            "(or npm ci --prefix tests/interop/node)"
        )
    return node


async def run_node(
    harness: Harness, script: str, env: dict[str, str], *args: str
) -> tuple[int, str, str]:
    """`node SCRIPT ARGS`: (exit status, stdout, stderr). Tokens it printed are remembered, so
    the harness's log check looks for them too."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(NODE_DIR / script),
        *args,
        cwd=NODE_DIR,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{script} did not finish in {NODE_TIMEOUT} s")
    harness.remember(*re.findall(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", (out + err).decode()))
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
