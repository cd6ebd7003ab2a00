"""The generators' arithmetic and the Python generator's closed loop (the engine used where
wrk is not installed), against the floor server. Counts only, never timings."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.generators import pyload
from benchmarks.generators.wrk import parse_output
from benchmarks.histogram import Histogram, undo_wrk_correction
from benchmarks.prepare import floor_line
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def wrk_correct(raw: dict[int, int], expected: int) -> dict[int, int]:
    """wrk 4's stats_correct(), as in its stats.c."""
    data = dict(raw)
    for n in sorted(raw):
        if n < 2 * expected:
            continue
        count, m = raw[n], n - expected
        while count and m > expected:
            data[m] = data.get(m, 0) + count
            m -= expected
    return data


def test_wrk_correction_is_taken_back_out_exactly() -> None:
    rng = random.Random(7)
    raw: dict[int, int] = {}
    for _ in range(20_000):
        value = int(rng.lognormvariate(7.0, 0.8))  # ~1 ms, with a long tail
        raw[value] = raw.get(value, 0) + 1
    runtime_us, connections = 1_000_000, 32
    completed = sum(raw.values())
    expected = runtime_us // (completed // connections)
    corrected = wrk_correct(raw, expected)
    assert sum(corrected.values()) > completed  # wrk added samples
    assert undo_wrk_correction(corrected, runtime_us, completed, connections) == raw


def test_percentiles_are_nearest_rank() -> None:
    hist = Histogram({v: 1 for v in range(1, 101)})
    assert hist.percentiles((50, 90, 99, 100)) == {50: 50, 90: 90, 99: 99, 100: 100}
    assert hist.percentile(99.9) == 100
    assert Histogram().percentile(99) == 0


def test_wrk_output_is_parsed_into_one_interval() -> None:
    out = "\n".join(
        [
            "Running 1s test @ http://127.0.0.1:1/token",
            "BENCH summary 1000000 4 900 0 0 0 1 0",
            "BENCH thread 1 6 -1",
            "BENCH status 200 3",
            "BENCH status 400 1",
            "BENCH error 1 400 invalid_grant",
            "BENCH hist 100:2 200:1 5000:1",
        ]
    )
    outcome = parse_output(out, connections=2)
    assert outcome.completed == 4 and outcome.ok == 3
    assert outcome.errors == {"400 invalid_grant": 1}
    assert outcome.per_thread_used == [6] and not outcome.exhausted
    assert outcome.hist.total == 4  # expected interval 500 µs: 5000 µs added synthetic ones


@pytest.fixture
def floor_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "the floor server exited"
                assert time.monotonic() < deadline, "the floor server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/token"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_generator_closed_and_open_loop(floor_url: str) -> None:
    lines = [floor_line()] * 50_000
    closed = pyload.LoadSpec(floor_url, "closed", 1.0, connections=4, processes=2)
    outcome, unused = pyload.run(closed, lines)
    assert outcome.completed > 0 and outcome.error_count == 0
    assert outcome.ok == outcome.completed
    assert outcome.used + len(unused) == len(lines)  # every line is sent once or returned
    opened = pyload.LoadSpec(floor_url, "open", 1.0, connections=16, rate=200, processes=1)
    outcome, _ = pyload.run(opened, lines[:300])
    assert outcome.error_count == 0
    assert outcome.scheduled == outcome.completed == pytest.approx(200, abs=2)
    assert outcome.lag.total == outcome.completed
