"""Shared pytest fixtures for the tokensvc suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest

from tests.redis_topologies import RedisClusterServers, SentinelServers
from tests.servers import PostgresServer, RedisServer
from tokensvc import logs

# ============================================================================
# Test infrastructure: throwaway Redis/Postgres servers (session scope).
#
# Set TOKENSVC_TEST_REDIS_URL / TOKENSVC_TEST_DATABASE_URL to use existing
# servers instead; otherwise private servers are started on free loopback
# ports (never the machine's own 6379/5432) and stopped at session end.
# Tests that stop/restart a store should start their own RedisServer /
# PostgresServer from tests.servers rather than disturb these shared ones.
# ============================================================================


def _external_or_own(variable: str, own: type[RedisServer | PostgresServer]) -> Iterator[str]:
    """The URL in the environment variable `variable` if it is set, else the URL of an `own`
    server, stopped when the generator finishes."""
    external = os.environ.get(variable)
    if external:
        yield external
        return
    with own() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis for the whole session (database 0, may hold other tests' keys)."""
    yield from _external_or_own("TOKENSVC_TEST_REDIS_URL", RedisServer)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Superuser URL of a Postgres for the session; use create_database() for a clean DB."""
    yield from _external_or_own("TOKENSVC_TEST_DATABASE_URL", PostgresServer)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on loopback, always started here (a shared one would be
    reshaped by the tests)."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelServers]:
    """A master, a replica and three sentinels. Tests that fail it over start their own."""
    with SentinelServers() as servers:
        yield servers


# ============================================================================
# End of test infrastructure section.
# ============================================================================


# ============================================================================
# Log capture: every structlog event of the suite, rendered as production JSON.
# ============================================================================


class LogSink:
    """A binary stream structlog writes JSON lines to; tests check what reached it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._partial = b""

    def write(self, data: bytes) -> int:
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        self.lines.extend(c for c in chunks if c)
        return len(data)

    def flush(self) -> None:
        return None

    def mark(self) -> int:
        return len(self.lines)

    def events(self, since: int = 0) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.lines[since:]]

    def assert_clean(self, since: int, secrets: set[str]) -> None:
        """Every line is one JSON object, and no secret appears in any of them."""
        for line in self.lines[since:]:
            assert isinstance(orjson.loads(line), dict)
            text = line.decode("utf-8", "replace")
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"a secret reached a log line: {text[:200]}"


@pytest.fixture(scope="session", autouse=True)
def log_sink() -> LogSink:
    sink = LogSink()
    logs.configure("json", sink, cache=False, buffered=False)  # read back at once
    return sink
