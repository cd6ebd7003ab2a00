"""A listening service has frozen its start-up objects and spaced its collections out
(`tokensvc.collector`). Run in a child process: freezing is for the whole interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tokensvc import collector

_CHILD = """
import asyncio, gc, json, os, signal
from aiohttp import web
from tokensvc.http.server import serve

def started():
    print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}))
    os.kill(os.getpid(), signal.SIGINT)

asyncio.run(serve([(web.Application(), "127.0.0.1", 0)], started=started))
"""


def test_a_listening_service_has_settled_its_collector() -> None:
    before = subprocess.run(
        [sys.executable, "-c", "import gc, json; print(json.dumps(gc.get_threshold()))"],
        capture_output=True,
        check=True,
        text=True,
    )
    assert tuple(json.loads(before.stdout)) != (collector.YOUNG, collector.MIDDLE, collector.OLD)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, check=True, text=True, timeout=60
    )
    seen = json.loads(child.stdout.splitlines()[0])
    assert tuple(seen["threshold"]) == (collector.YOUNG, collector.MIDDLE, collector.OLD)
    assert seen["frozen"] > 10_000  # every module, class and function start-up made
