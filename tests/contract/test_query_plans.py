"""Every hot-path statement of `tokensvc.storage.postgres` and every statement of
`tokensvc.storage.purge` reads through its intended indexes, as Postgres plans it for a database
of realistic size (thousands of rows, ANALYZEd, planner settings untouched).

Each statement is checked in both plans it can run with: the custom plan (the parameters'
values known; what unnamed statements behind `?pgbouncer=true` always get) and the generic plan
(what a named statement cached by asyncpg switches to after five executions).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests.contract.backends import NOW
from tests.servers import run_sync
from tokensvc.storage import purge
from tokensvc.storage.postgres import clients as pg_clients
from tokensvc.storage.postgres import grants as pg

TABLES = ("clients", "grants", "refresh_tokens")

# 2,000 clients; 6,000 grants (2% revoked) with four refresh tokens each, three retired; 300
# tombstones; 5% of the tokens expired (purge runs regularly, so few are).
_FILL = """
INSERT INTO clients (client_id, name, auth_method, grant_types, redirect_uris, scopes)
SELECT 'client-' || i, 'App ' || i, 'client_secret_basic', '{authorization_code,refresh_token}',
       ARRAY['https://app' || i || '.example/cb'], '{openid,offline_access}'
FROM generate_series(1, 2000) i;

INSERT INTO grants (grant_id, client_id, sub, scope, auth_time, claims, created_at, revoked_at)
SELECT 'grant-' || lpad(i::text, 5, '0'), 'client-' || (i % 2000 + 1), 'user-' || (i % 900),
       'openid offline_access', $1::bigint - 86400, '{"email_verified": true}',
       to_timestamp($1 - 86400 * 20 + i * 250),
       CASE WHEN i % 50 = 0 THEN to_timestamp($1 - 3600) END
FROM generate_series(1, 6000) i;
INSERT INTO grants (grant_id, created_at, revoked_at)
SELECT 'tomb-' || i, to_timestamp($1 - i * 60), to_timestamp($1 - i * 60)
FROM generate_series(1, 300) i;

INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, retired_at,
                            successor_box)
SELECT sha256(('token-' || g || '-' || n)::bytea), 'grant-' || lpad(g::text, 5, '0'),
       to_timestamp($1 - (4 - n) * 86400 - g),
       to_timestamp($1 - (4 - n) * 86400 - g + CASE WHEN g % 20 = 0 THEN 86400 ELSE 30 * 86400 END),
       CASE WHEN n < 4 THEN to_timestamp($1 - (3 - n) * 86400 - g) END,
       CASE WHEN n < 4 THEN sha256(('box-' || g || '-' || n)::bytea) END
FROM generate_series(1, 6000) g, generate_series(1, 4) n;
"""


def ts(epoch: float) -> str:
    return f"to_timestamp({epoch})"


HASH = "sha256('token-17-4'::bytea)"
NEW_HASH = "sha256('token-new'::bytea)"

# Statement, its arguments as SQL literals, the indexes its plan must read.
CASES: dict[str, tuple[str, list[str], set[str]]] = {
    "client lookup": (pg_clients._CLIENT_GET, ["'client-77'"], {"clients_pkey"}),
    "read refresh tokens by hash": (
        pg._TOKEN_STATES,
        [f"ARRAY[{HASH}]"],
        {"refresh_tokens_pkey", "grants_pkey"},
    ),
    "rotate": (
        pg._ROTATE_MANY,
        [
            f"ARRAY[{HASH}]",
            f"ARRAY[{NOW}::float8]",
            "ARRAY['\\x00'::bytea]",
            f"ARRAY[{NEW_HASH}]",
            f"ARRAY[{NOW + 3600}::float8]",
        ],
        {"refresh_tokens_pkey", "grants_pkey"},
    ),
    "live grant (access-token checks)": (pg._LIVE_GRANT, ["'grant-00017'"], {"grants_pkey"}),
    "purge: expired refresh tokens": (
        purge._DELETE_EXPIRED,
        [ts(NOW - 300), "1000"],
        {"refresh_tokens_expires_at", "refresh_tokens_pkey"},
    ),
    "purge: grants left without tokens": (
        purge._DELETE_EMPTIED,
        ["ARRAY['grant-00020', 'grant-00040']", ts(NOW - 4200), ts(NOW - 3660)],
        {"grants_pkey", "refresh_tokens_grant_id"},
    ),
    "purge: slice of the grant pass": (
        purge._DELETE_SLICE,
        ["'grant-02000'", "1000", ts(NOW - 4200), ts(NOW - 3660)],
        {"grants_pkey", "refresh_tokens_grant_id"},
    ),
    "purge --dry-run: slice of the grant pass": (
        purge._COUNT_SLICE,
        ["'grant-02000'", "1000", ts(NOW - 4200), ts(NOW - 3660), ts(NOW - 300)],
        {"grants_pkey", "refresh_tokens_grant_id"},
    ),
}
# Upserts: no scan at all, the conflict found through the primary key.
UPSERTS: dict[str, tuple[str, list[str]]] = {
    "issue grant": (
        pg._ISSUE_MANY,
        [
            "ARRAY['grant-new']",
            "ARRAY['client-5']",
            "ARRAY['user-1']",
            "ARRAY['openid']",
            f"ARRAY[{int(NOW)}]::bigint[]",
            "ARRAY[NULL]::text[]",
            "ARRAY[NULL]::jsonb[]",
            "ARRAY[NULL]::text[]",
            "ARRAY['{}']::jsonb[]",
            f"ARRAY[{NOW}]::float8[]",
            f"ARRAY[{NEW_HASH}]",
            f"ARRAY[{NOW + 3600}]::float8[]",
            "ARRAY[NULL]::text[]",
            """ARRAY['["https://api.example"]']::jsonb[]""",
            "ARRAY[NULL]::text[]",
        ],
    ),
    "revoke family": (pg._REVOKE, ["'grant-00017'", ts(NOW)]),
}
PLANS = ["force_custom_plan", "force_generic_plan"]
# Runs once per dry run, so always with a custom plan: Postgres tries a generic plan only from
# a prepared statement's sixth execution on (and the generic guess, a third of the table,
# would rightly be a Seq Scan).
ONCE = {
    "purge --dry-run: expired refresh tokens": (
        purge._COUNT_EXPIRED,
        [ts(NOW - 300)],
        {"refresh_tokens_expires_at"},
    )
}


@pytest.fixture(scope="module")
def filled(contract_database_url: str) -> Iterator[str]:
    async def fill() -> None:
        conn = await asyncpg.connect(contract_database_url)
        try:
            await conn.execute(
                "TRUNCATE clients, users, grants, refresh_tokens, consents, logout_deliveries"
            )
            await conn.execute(_FILL.replace("$1", str(int(NOW))))  # one script, one transaction
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    run_sync(fill)
    yield contract_database_url


@pytest.fixture
async def conn(filled: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(filled)
    try:
        yield connection
    finally:
        await connection.close()


async def explain(conn: asyncpg.Connection, sql: str, args: list[str], mode: str) -> Any:
    """The plan of `sql` with `args` bound, as the plan cache in `mode` makes it."""
    await conn.execute(f"SET plan_cache_mode = {mode}")
    await conn.execute(f"PREPARE planned AS {sql}")
    try:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE planned({', '.join(args)})")
    finally:
        await conn.execute("DEALLOCATE planned; RESET plan_cache_mode")
    return json.loads(raw)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    return [
        n["Relation Name"]
        for n in nodes(plan)
        if n["Node Type"] == "Seq Scan" and n["Relation Name"] in TABLES
    ]


def indexes(plan: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in nodes(plan) if "Index Name" in n}


async def test_the_database_is_big_enough_for_the_planner_to_care(
    conn: asyncpg.Connection,
) -> None:
    """Realistic sizes, and the check can fail: a predicate no index serves is a Seq Scan."""
    sizes = {
        row["relname"]: row["reltuples"]
        for row in await conn.fetch(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY($1)", list(TABLES)
        )
    }
    assert sizes == {"clients": 2000, "grants": 6300, "refresh_tokens": 24000}
    unindexed = await explain(
        conn,
        "SELECT count(*) FROM refresh_tokens WHERE retired_at < $1",
        [ts(NOW)],
        "force_custom_plan",
    )
    assert seq_scans(unindexed) == ["refresh_tokens"]


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        *((name, mode) for name in CASES for mode in PLANS),
        *((name, "force_custom_plan") for name in ONCE),
    ],
)
async def test_statement_reads_through_its_indexes(
    conn: asyncpg.Connection, name: str, mode: str
) -> None:
    sql, args, wanted = (CASES | ONCE)[name]
    plan = await explain(conn, sql, args, mode)
    assert seq_scans(plan) == [], json.dumps(plan, indent=1)
    assert wanted <= indexes(plan), json.dumps(plan, indent=1)


@pytest.mark.parametrize("mode", PLANS)
@pytest.mark.parametrize("name", list(UPSERTS))
async def test_upsert_finds_its_conflict_by_primary_key(
    conn: asyncpg.Connection, name: str, mode: str
) -> None:
    sql, args = UPSERTS[name]
    plan = await explain(conn, sql, args, mode)
    assert seq_scans(plan) == [], json.dumps(plan, indent=1)
    upserts = [n for n in nodes(plan) if n.get("Conflict Resolution") is not None]
    assert [(n["Relation Name"], n["Conflict Arbiter Indexes"]) for n in upserts] == [
        ("grants", ["grants_pkey"])
    ]
