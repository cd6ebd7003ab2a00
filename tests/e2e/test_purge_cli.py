"""`tokensvc purge` as an operator (or a CronJob) runs it: one JSON summary on stdout, progress
in plain words on stderr, one line and exit status 2 for bad input or an unreachable database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.procs import add_client, base_env, fresh_database, query, run
from tests.servers import free_port

DAY = 86400


@contextmanager
def seeded(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database: one client, seven grants whose one token expired two days ago, and
    one live family (a retired, unexpired token and its live successor)."""
    with fresh_database(postgres_admin_url) as url:
        env = base_env(TOKENSVC_DATABASE_URL=url)
        run(["migrate"], env).ok()
        grant_types = ["refresh_token", "authorization_code"]
        client = add_client(env, "App", grant_types, "--redirect-uri", "https://app.example/cb")
        client_id = client["client_id"]
        now = time.time()
        query(
            url,
            """
            INSERT INTO grants (grant_id, client_id, sub, scope, auth_time, created_at)
            SELECT 'grant-' || i, $1, 'user-1', 'openid', 0, to_timestamp($2 - 3 * 86400)
            FROM generate_series(0, 7) i""",
            client_id,
            now,
        )
        query(
            url,
            """
            INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, retired_at)
            SELECT sha256(('t' || i)::bytea), 'grant-' || i, to_timestamp($1 - 3 * 86400),
                   to_timestamp($1 - 2 * 86400), NULL
            FROM generate_series(1, 7) i
            UNION ALL SELECT sha256('old'::bytea), 'grant-0', to_timestamp($1 - 600),
                   to_timestamp($1 + 86400), to_timestamp($1 - 60)
            UNION ALL SELECT sha256('new'::bytea), 'grant-0', to_timestamp($1 - 60),
                   to_timestamp($1 + 86400), NULL""",
            now,
        )
        yield url


@pytest.fixture
def db(postgres_admin_url: str) -> Iterator[str]:
    with seeded(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def untouched(postgres_admin_url: str) -> Iterator[str]:
    """Shared by the bad-input tests: bad input deletes nothing, so each finds it whole."""
    with seeded(postgres_admin_url) as url:
        yield url


def sizes(url: str) -> tuple[int, int]:
    row = query(
        url, "SELECT (SELECT count(*) FROM refresh_tokens) AS t, (SELECT count(*) FROM grants) AS g"
    )[0]
    return row["t"], row["g"]


def test_purge_prints_a_summary_and_deletes_in_batches(db: str) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=db)
    started = int(time.time())

    dry = run(["purge", "--batch-size", "3", "--dry-run"], env).ok()
    assert sizes(db) == (9, 8)
    summary = dry.json()
    assert summary["dry_run"] is True
    assert summary["tables"] == {"refresh_tokens": 7, "grants": 7}
    assert dry.stderr.startswith("dry run: counting refresh tokens that expired before ")

    done = run(["purge", "--batch-size", "3"], env).ok()
    summary = done.json()
    horizons = summary.pop("horizons")
    assert summary == {
        "dry_run": False,
        "complete": True,
        "batches": 3 + 1,
        "tables": {"refresh_tokens": 7, "grants": 7},
        "changes": 0,  # the change feed's rows are all recent
    }
    # The defaults: margin 3600 s, access tokens 3600 s, codes 60 s.
    assert horizons["refresh_tokens_expired_before"] in range(started - 3600, started - 3590)
    assert horizons["grants_created_before"] in range(started - 7200, started - 7190)
    assert horizons["grants_revoked_before"] in range(started - 3660, started - 3650)
    progress = done.stderr.splitlines()
    assert [line.split(":")[0] for line in progress[1:-1]] == [
        "expired refresh tokens, batch 1",
        "expired refresh tokens, batch 2",
        "expired refresh tokens, batch 3",
        "grants without refresh tokens, batch 1",
    ]
    assert progress[-1] == "deleted 7 refresh token(s) and 7 grant(s) in 4 batch(es)"
    assert sizes(db) == (2, 1)  # the live family, its retired token included

    again = run(["purge"], env).ok().json()
    assert again["tables"] == {"refresh_tokens": 0, "grants": 0}


def test_purge_out_of_time_says_so(db: str) -> None:
    summary = run(["purge", "--max-seconds", "0"], base_env(TOKENSVC_DATABASE_URL=db)).ok().json()
    assert summary["complete"] is False
    assert (summary["batches"], summary["tables"]) == (0, {"refresh_tokens": 0, "grants": 0})
    assert sizes(db) == (9, 8)


@pytest.mark.parametrize(
    ("args", "settings", "mentions"),
    [
        (["--batch-size", "0"], {}, "--batch-size"),
        (["--batch-size", "10001"], {}, "--batch-size"),
        (["--batch-size", "many"], {}, "--batch-size"),
        (["--max-seconds", "-1"], {}, "--max-seconds"),
        (["--bogus"], {}, "--bogus"),
        ([], {"TOKENSVC_ACCESS_TOKEN_TTL": "soon"}, "TOKENSVC_ACCESS_TOKEN_TTL"),
        ([], {"TOKENSVC_CODE_TTL": "0"}, "TOKENSVC_CODE_TTL"),
        ([], {"pgbouncer": "maybe"}, "pgbouncer"),
    ],
)
def test_purge_bad_input_is_one_line_and_deletes_nothing(
    untouched: str, args: list[str], settings: dict[str, str], mentions: str
) -> None:
    flag, env = settings.get("pgbouncer"), {k: v for k, v in settings.items() if k != "pgbouncer"}
    url = untouched if flag is None else f"{untouched}?pgbouncer={flag}"
    line = run(["purge", *args], base_env(TOKENSVC_DATABASE_URL=url, **env)).bad_input()
    assert mentions in line
    assert sizes(untouched) == (9, 8)


def test_purge_needs_a_reachable_database() -> None:
    assert "TOKENSVC_DATABASE_URL" in run(["purge"], base_env()).bad_input()
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    line = run(["purge"], base_env(TOKENSVC_DATABASE_URL=url)).bad_input()
    assert line == "tokensvc: postgres is unreachable"
