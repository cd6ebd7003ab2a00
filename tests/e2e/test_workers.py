"""`TOKENSVC_WORKERS=N` (issue 4, item 8): N worker processes on one port (SO_REUSEPORT) under
one supervisor that restarts a worker that dies, forwards SIGHUP, and stops them all on
SIGTERM. Real processes, real signals, real Postgres and Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import (
    Proc,
    add_machine_client,
    alive,
    base_env,
    basic,
    http,
    migrated_database,
    parent_of,
    reaped,
    run,
    service_env,
    wait_for,
    write_keys,
)

WORKERS_REDIS_DB = 7


def worker_pids(base: str, want: int, tries: int = 400) -> set[int]:
    """PIDs answering /healthz on the public port, one new connection per request."""
    seen: set[int] = set()
    for _ in range(tries):
        reply = http(f"{base}/healthz")
        assert reply.status == 200
        seen.add(reply.json()["pid"])
        if len(seen) >= want:
            break
    return seen


def issued_total(base: str, client_id: str) -> float:
    text = http(f"{base}/metrics").body.decode()
    families = text_string_to_metric_families(text)
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "tokensvc_tokens_issued_total"
        and sample.labels.get("client_id") == client_id
    )


def test_workers_share_the_port_restart_and_stop(
    postgres_admin_url: str, redis_url: str, tmp_path: Path
) -> None:
    with migrated_database(postgres_admin_url) as db:
        client = add_machine_client(base_env(TOKENSVC_DATABASE_URL=db))
        keys_file = write_keys(tmp_path)
        env = service_env(
            keys_file,
            TOKENSVC_WORKERS="2",
            TOKENSVC_DRAIN_SECONDS="1",
            TOKENSVC_DATABASE_URL=db,
            TOKENSVC_REDIS_URL=urlunsplit(
                urlsplit(redis_url)._replace(path=f"/{WORKERS_REDIS_DB}")
            ),
        )
        base = env["TOKENSVC_ISSUER"]
        internal = f"http://127.0.0.1:{env['TOKENSVC_INTERNAL_PORT']}"
        supervisor = Proc(["serve", "token"], env, tmp_path)
        all_workers: set[int] = set()
        try:
            supervisor.wait_http(f"{base}/healthz")
            workers = worker_pids(base, 2)
            assert len(workers) == 2 and supervisor.pid not in workers
            assert {parent_of(pid) for pid in workers} == {supervisor.pid}
            all_workers |= workers
            for _ in range(6):  # every worker issues tokens from the shared stores
                reply = http(
                    f"{base}/token",
                    data={"grant_type": "client_credentials"},
                    headers=basic(client["client_id"], client["client_secret"]),
                )
                assert reply.status == 200, reply.body
                assert http(f"{base}/readyz").status == 200
            # /metrics, whichever worker answers, counts what every worker did
            for _ in range(10):
                assert issued_total(base, client["client_id"]) == 6
            # the internal listener is shared too
            for _ in range(6):
                reply = http(
                    f"{internal}/internal/clients/{client['client_id']}",
                    headers={"Authorization": f"Bearer {env['TOKENSVC_INTERNAL_TOKEN']}"},
                )
                assert reply.status == 200

            # SIGHUP to the supervisor reaches every worker
            new_kid = (
                run(["keys", "rotate", str(keys_file), "--lead", "0"], base_env())
                .ok()
                .json()["kid"]
            )
            supervisor.signal(signal.SIGHUP)
            wait_for(
                lambda: sum(e.get("event") == "keys reloaded" for e in supervisor.events()) == 2,
                5,
                "both workers to reload",
            )
            for _ in range(20):
                assert new_kid in {k["kid"] for k in http(f"{base}/jwks.json").json()["keys"]}

            # a worker killed outright is replaced, and the port keeps serving meanwhile
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: reaped(victim), 5, "the killed worker to be reaped")
            survivor = (workers - {victim}).pop()
            for _ in range(20):  # every request meanwhile is answered
                assert http(f"{base}/healthz").status == 200
            replacement = wait_for(
                lambda: worker_pids(base, 2, tries=50) - workers or None, 10, "a replacement worker"
            )
            (new_pid,) = replacement
            assert parent_of(new_pid) == supervisor.pid and alive(survivor)
            all_workers |= replacement
            # a replacement starts from the file as it is now, not as the supervisor read it
            wait_for(
                lambda: all(
                    new_kid in {k["kid"] for k in http(f"{base}/jwks.json").json()["keys"]}
                    for _ in range(20)
                ),
                5,
                "the replacement to publish the rotated key",
            )

            # a quick second death is restarted later than the first: no crash-loop spinning
            os.kill(new_pid, signal.SIGKILL)
            wait_for(lambda: reaped(new_pid), 5, "the killed worker to be reaped")
            wait_for(
                lambda: len(worker_pids(base, 2, tries=50) - workers - replacement) == 1,
                10,
                "a second replacement",
            )
            all_workers |= worker_pids(base, 2, tries=50)

            supervisor.signal(signal.SIGTERM)
            assert supervisor.wait(15) == 0
        finally:
            supervisor.kill()
        for pid in all_workers:
            assert not alive(pid), f"worker {pid} outlived its supervisor"
        events = supervisor.events()
        restarts = [
            e["restart_in"] for e in events if e.get("event") == "worker died; restarting it"
        ]
        assert len(restarts) == 2 and restarts[1] > restarts[0]
        assert sum(e.get("event") == "worker stopped" and e["status"] == 0 for e in events) == 2
        assert "Traceback" not in supervisor.stderr()
        assert client["client_secret"] not in supervisor.stdout()


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    keys_file = write_keys(tmp_path)
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        busy = occupant.getsockname()[1]
        env = service_env(keys_file, TOKENSVC_WORKERS="3", TOKENSVC_PORT=str(busy))
        started = time.monotonic()
        result = run(["serve", "token"], env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("tokensvc: cannot listen") and str(busy) in line
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(e.get("event") == "worker started" for e in events) == 1
