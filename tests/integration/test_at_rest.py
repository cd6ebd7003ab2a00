"""What the real stores hold after a full flow: hashes only, never a code, token or secret."""

from __future__ import annotations

import hashlib

import pytest
import redis.asyncio as aioredis

from tests.harness import Harness
from tokensvc.storage.postgres import PostgresGrants
from tokensvc.storage.redis_codes import RedisCodes

pytestmark = pytest.mark.asyncio


@pytest.fixture
def backend() -> str:
    return "real"


async def postgres_dump(harness: Harness) -> str:
    """Every row of every table of ours, as text (bytea shows as hex)."""
    grants = harness.raw.grants
    assert isinstance(grants, PostgresGrants)
    async with grants._db.connection() as conn:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        assert {"clients", "grants", "refresh_tokens", "users"} <= set(tables)
        rows = []
        for table in tables:
            rows += [r[0] for r in await conn.fetch(f'SELECT t::text FROM "{table}" t')]  # noqa: S608 - names come from pg_tables
    return "\n".join(rows)


async def redis_dump(harness: Harness) -> bytes:
    codes = harness.raw.codes
    assert isinstance(codes, RedisCodes)
    client: aioredis.Redis = codes._redis
    keys = await client.keys("*")
    assert keys
    values = [await client.get(k) for k in keys]
    return b"\n".join(keys + [v for v in values if v])


async def test_no_plaintext_at_rest(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    unused_code, _ = await harness.mint_code(client)
    stored = await redis_dump(harness)
    assert code.encode() not in stored and unused_code.encode() not in stored
    assert hashlib.sha256(code.encode()).hexdigest().encode() in stored  # the scan sees keys

    first = (await harness.exchange(client, secret, code, verifier)).body
    second = (
        await harness.token(
            client, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
    ).body
    dump = await postgres_dump(harness)
    assert secret is not None and secret not in dump
    for value in (
        first["refresh_token"],
        second["refresh_token"],
        first["access_token"],
        second["access_token"],
        code,
    ):
        assert value not in dump
    # The scan does see the hashes it should: bytea renders as hex here.
    assert hashlib.sha256(second["refresh_token"].encode()).hexdigest() in dump
    assert client.client_id in dump
