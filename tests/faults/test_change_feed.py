"""The change feed across faults (SPEC: an admin change is in force on every replica within
1 s): a replica whose feed lost its connection, to a Postgres restart or to its backend being
terminated, still refuses a client removed meanwhile once the feed is back, from the rows it
missed, although TOKENSVC_CLIENT_CACHE_TTL (30 s) would keep the client cached.

Bounds, per case: the refusal comes within 1 s of the later of the change's commit and the
feed's reconnection (its "change feed following" log line), and within 3 s of the change in
all (the feed retries every second at most while Postgres is down)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.procs import (
    Proc,
    Reply,
    add_machine_client,
    base_env,
    basic,
    http,
    run,
    service_env,
    wait_for,
    write_keys,
)
from tests.servers import PostgresServer, run_sync
from tokensvc.storage.postgres.changes import APPLICATION_NAME

BOUND = 1.0  # seconds from the later of commit and reconnection to the refusal
TOTAL = 3.0  # seconds from the change to the refusal, whatever happened
POLL = 0.05
FOLLOWING = re.compile(r"change feed following")


class Replica:
    def __init__(self, database_url: str, workdir: Path) -> None:
        self.env = service_env(write_keys(workdir), TOKENSVC_DATABASE_URL=database_url)
        self.base = self.env["TOKENSVC_ISSUER"]
        self.proc = Proc(["serve", "token"], self.env, workdir, "replica")
        self.proc.wait_http(f"{self.base}/healthz")
        self.proc.wait_stdout(FOLLOWING)

    def token(self, client: dict[str, Any]) -> Reply:
        return http(
            f"{self.base}/token",
            data={"grant_type": "client_credentials"},
            headers=basic(client["client_id"], client["client_secret"]),
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.proc.events() if e.get("event", "").startswith(name)]

    def refused_at(self, client: dict[str, Any], since: float) -> float:
        """Wall-clock time of the first `invalid_client`, polling every 50 ms; until then
        the client is served (or, while the pool reconnects, a proper 503)."""
        while time.time() - since < 2 * TOTAL:
            reply = self.token(client)
            if reply.status == 401:
                assert reply.json()["error"] == "invalid_client"
                return time.time()
            assert reply.status in (200, 503), reply.body
            time.sleep(POLL)
        pytest.fail(f"still not refused {2 * TOTAL}s after the change")

    def reconnected_at(self, sessions: int) -> float:
        """When the feed's `sessions`-th connection caught up, from its log line."""

        def caught_up() -> list[dict[str, Any]]:
            found = self.events("change feed following")
            return found if len(found) >= sessions else []

        lines = wait_for(caught_up, 5, f"session {sessions} of the change feed")
        stamp = lines[sessions - 1]["timestamp"].replace("Z", "+00:00")
        return datetime.fromisoformat(stamp).timestamp()


@pytest.fixture
def replica(own_postgres: PostgresServer, tmp_path: Path) -> Iterator[Replica]:
    made = Replica(own_postgres.url, tmp_path)
    try:
        yield made
    finally:
        made.proc.kill()
        log = made.proc.stdout() + made.proc.stderr()
        assert "Traceback" not in log


def warm(replica: Replica, env: dict[str, str]) -> dict[str, Any]:
    client = add_machine_client(env)
    assert replica.token(client).status == 200  # cached by the replica from now on
    return client


def test_a_change_right_after_postgres_restarts_is_in_force(
    own_postgres: PostgresServer, replica: Replica
) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=own_postgres.url)
    client = warm(replica, env)
    own_postgres.stop()
    wait_for(lambda: replica.events("change feed lost"), 5, "the feed to notice the stop")
    assert replica.token(client).status == 200  # the cache keeps serving meanwhile
    own_postgres.start()
    run(["client", "remove", client["client_id"]], env).ok()
    removed = time.time()

    refused = replica.refused_at(client, removed)
    back = replica.reconnected_at(2)
    assert refused - max(back, removed) < BOUND, (refused - back, refused - removed)
    assert refused - removed < TOTAL


def test_a_change_committed_while_the_feed_is_cut_off_is_in_force(
    own_postgres: PostgresServer, replica: Replica
) -> None:
    """The feed's backend is terminated (a failover, an idle-connection reaper) and the change
    commits before the feed is back: no listener hears its notification, the feed reads it
    from `changes` when it reconnects."""
    env = base_env(TOKENSVC_DATABASE_URL=own_postgres.url)
    client = warm(replica, env)

    async def cut_then_remove() -> None:
        conn = await asyncpg.connect(own_postgres.url)  # a superuser
        try:
            async with conn.transaction():
                await conn.execute("DELETE FROM clients WHERE client_id = $1", client["client_id"])
                # Waits until the backend is gone (up to 2 s); the commit follows at once,
                # long before the feed's first retry (0.1 s).
                cut = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid, 2000)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    APPLICATION_NAME,
                )
                assert cut == 1
        finally:
            await conn.close()

    run_sync(cut_then_remove)
    removed = time.time()

    refused = replica.refused_at(client, removed)
    assert refused - removed < BOUND, refused - removed
    replica.reconnected_at(2)
    # It read the one change it missed from the feed, exactly (no reset).
    assert replica.events("change feed following")[1]["caught_up"] == 1
    assert replica.events("change feed lost")
