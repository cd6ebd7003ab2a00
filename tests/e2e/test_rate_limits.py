"""Abuse limits across processes: two `tokensvc serve token` sharing one Redis and one
Postgres hold one bucket per client between them, and a lockout recorded by one is enforced by
the other. Clients are registered with `tokensvc client add --rate-limit`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.e2e.procs import (
    Proc,
    Reply,
    add_machine_client,
    base_env,
    basic,
    http,
    migrated_database,
    query,
    run,
    service_env,
    write_keys,
)
from tests.servers import free_port
from tokensvc.limits.lockout import LOCKOUT, MAX_FAILURES, SYNC_INTERVAL

LIMITS_REDIS_DB = 12  # not 0: other suites share the session's Redis


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database, migrated by `tokensvc migrate`."""
    with migrated_database(postgres_admin_url) as url:
        yield url


def add_client(db: str, *flags: str) -> tuple[str, str]:
    out = add_machine_client(base_env(TOKENSVC_DATABASE_URL=db), *flags)
    return out["client_id"], out["client_secret"]


def token(base: str, client_id: str, secret: str) -> Reply:
    return http(
        f"{base}/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )


def test_client_add_rate_flags_are_stored_and_listed(database: str) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=database)
    out = add_machine_client(env, "--rate-limit", "2.5", "--rate-burst", "10", name="M")
    assert (out["rate_limit"], out["rate_burst"]) == (2.5, 10)
    default_burst = add_machine_client(env, "--rate-limit", "20", name="D")
    assert (default_burst["rate_limit"], default_burst["rate_burst"]) == (20.0, 20)
    unlimited = add_machine_client(env, name="U")
    assert (unlimited["rate_limit"], unlimited["rate_burst"]) == (None, None)

    listed = {c["client_id"]: c for c in run(["client", "list"], env).ok().json()}
    assert (listed[out["client_id"]]["rate_limit"], listed[out["client_id"]]["rate_burst"]) == (
        2.5,
        10,
    )
    assert listed[unlimited["client_id"]]["rate_limit"] is None
    rows = query(database, "SELECT client_id, rate_limit, rate_burst FROM clients")
    assert {(r["client_id"], r["rate_limit"], r["rate_burst"]) for r in rows} == {
        (out["client_id"], 2.5, 10),
        (default_burst["client_id"], 20.0, 20),
        (unlimited["client_id"], None, None),
    }


@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        (["--rate-burst", "5"], "--rate-limit"),
        (["--rate-limit", "0"], "--rate-limit"),
        (["--rate-limit", "nan"], "--rate-limit"),
        (["--rate-limit", "fast"], "--rate-limit"),
        (["--rate-limit", "1", "--rate-burst", "0"], "--rate-burst"),
        (["--rate-limit", "1", "--rate-burst", "2.5"], "--rate-burst"),
    ],
)
def test_client_add_bad_rate_flags_are_one_line_and_write_nothing(
    database: str, flags: list[str], mentions: str
) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=database)
    line = run(
        ["client", "add", "--name", "M", "--grant-type", "client_credentials", *flags], env
    ).bad_input()
    assert mentions in line
    assert query(database, "SELECT client_id FROM clients") == []


def test_two_processes_sharing_redis_hold_one_limit(
    database: str, redis_url: str, tmp_path: Path
) -> None:
    rate, burst = 0.1, 6  # one token per 10 s: the test sees the burst, not the refill
    limited_id, limited_secret = add_client(
        database, "--rate-limit", str(rate), "--rate-burst", str(burst)
    )
    free_id, free_secret = add_client(database)
    locked_id, locked_secret = add_client(database)

    keys_file = write_keys(tmp_path)
    keys_file.chmod(0o600)
    redis = urlunsplit(urlsplit(redis_url)._replace(path=f"/{LIMITS_REDIS_DB}"))
    services: list[Proc] = []
    bases: list[str] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            workdir = tmp_path / name
            workdir.mkdir()
            base = f"http://127.0.0.1:{port}"
            env = service_env(
                keys_file,
                TOKENSVC_ISSUER="http://127.0.0.1:8080",  # one issuer for both processes
                TOKENSVC_PORT=str(port),
                TOKENSVC_DATABASE_URL=database,
                TOKENSVC_REDIS_URL=redis,
            )
            services.append(Proc(["serve", "token"], env, workdir))
            bases.append(base)
        for service, base in zip(services, bases, strict=True):
            assert service.wait_http(f"{base}/healthz").status == 200

        # Alternate between the two: together they admit one bucket's worth, not two.
        started = time.monotonic()
        replies = [token(bases[i % 2], limited_id, limited_secret) for i in range(4 * burst)]
        elapsed = time.monotonic() - started
        admitted = [i for i, r in enumerate(replies) if r.status == 200]
        refused = [r for r in replies if r.status != 200]
        assert burst <= len(admitted) <= burst + int(elapsed * rate), [r.status for r in replies]
        assert {i % 2 for i in admitted[:burst]} == {0, 1}  # both processes admitted some
        for reply in refused:
            assert reply.status == 429 and reply.json()["error"] == "slow_down"
            assert 1 <= int(reply.headers["Retry-After"]) <= 10
        # A client without a limit is served by both meanwhile.
        for base in bases:
            assert token(base, free_id, free_secret).status == 200

        # A lockout recorded through one process is enforced by the other, for that client only.
        for _ in range(MAX_FAILURES):
            assert token(bases[0], locked_id, "wrong").status == 401
        assert token(bases[0], locked_id, locked_secret).status == 429
        deadline = time.monotonic() + 20 * SYNC_INTERVAL
        while (reply := token(bases[1], locked_id, locked_secret)).status == 200:
            assert time.monotonic() < deadline, "process b never saw the lockout"
            time.sleep(SYNC_INTERVAL / 5)
        assert reply.status == 429
        assert 1 <= int(reply.headers["Retry-After"]) <= LOCKOUT
        for base in bases:
            assert token(base, free_id, free_secret).status == 200
    finally:
        for service in services:
            service.kill()

    for service in services:
        out = service.stdout() + service.stderr()
        for leaked in (limited_secret, free_secret, locked_secret):
            assert leaked not in out
        assert re.search(r'"error":\s*"slow_down"', service.stdout())
