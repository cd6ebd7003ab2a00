"""Concurrency claims proven by racing real HTTP requests against the real stores:
one code, one success; one refresh token, one successor; reuse revokes the family."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import Harness
from tokensvc import opaque
from tokensvc.storage.memory import MemoryGrants
from tokensvc.storage.postgres import PostgresGrants

pytestmark = pytest.mark.asyncio


async def refresh_rows(harness: Harness) -> list[tuple[bytes, bytes | None]]:
    """Every stored refresh token as (hash, sealed successor response)."""
    grants = harness.raw.grants
    if isinstance(grants, MemoryGrants):
        return [(h, t.successor_box) for h, t in grants._tokens.items()]
    assert isinstance(grants, PostgresGrants)
    async with grants._db.connection() as conn:
        rows = await conn.fetch("SELECT token_hash, successor_box FROM refresh_tokens")
    return [(r["token_hash"], r["successor_box"]) for r in rows]


async def first_refresh(harness: Harness):
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200
    return client, secret, reply.body["refresh_token"]


async def test_fifty_concurrent_exchanges_of_one_code(harness: Harness) -> None:
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    replies = await asyncio.gather(
        *(harness.exchange(client, secret, code, verifier) for _ in range(50))
    )
    statuses = sorted(r.status for r in replies)
    assert statuses.count(200) == 1, statuses
    assert all(r.body["error"] == "invalid_grant" for r in replies if r.status != 200)
    assert statuses.count(400) == 49
    # The replays revoked the grant, so even the winner's refresh token is dead now.
    winner = next(r for r in replies if r.status == 200)
    reply = await harness.token(
        client, secret, grant_type="refresh_token", refresh_token=winner.body["refresh_token"]
    )
    assert reply.status == 400


async def test_thirty_concurrent_refreshes_share_one_successor(harness: Harness) -> None:
    client, secret, refresh = await first_refresh(harness)
    assert len(await refresh_rows(harness)) == 1
    replies = await asyncio.gather(
        *(
            harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
            for _ in range(30)
        )
    )
    assert [r.status for r in replies] == [200] * 30, [r.body for r in replies]
    assert len({r.body["refresh_token"] for r in replies}) == 1
    assert len({r.body["access_token"] for r in replies}) == 1
    assert len({r.body["id_token"] for r in replies}) == 1
    rows = await refresh_rows(harness)
    assert len(rows) == 2  # exactly one successor row
    successor = replies[0].body["refresh_token"]
    ok = await harness.token(client, secret, grant_type="refresh_token", refresh_token=successor)
    assert ok.status == 200


async def test_grace_zero_lets_exactly_one_refresh_win(make_harness) -> None:
    harness = await make_harness(refresh_grace=0)
    client, secret, refresh = await first_refresh(harness)
    replies = await asyncio.gather(
        *(
            harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
            for _ in range(30)
        )
    )
    statuses = [r.status for r in replies]
    assert statuses.count(200) == 1, statuses
    assert all(r.body["error"] == "invalid_grant" for r in replies if r.status != 200)
    assert len(await refresh_rows(harness)) == 2


async def test_retired_token_after_grace_revokes_whole_family(harness: Harness) -> None:
    client, secret, first = await first_refresh(harness)
    second = (
        await harness.token(client, secret, grant_type="refresh_token", refresh_token=first)
    ).body["refresh_token"]
    third = (
        await harness.token(client, secret, grant_type="refresh_token", refresh_token=second)
    ).body["refresh_token"]
    # Within the grace the repeat is served the same successor, not treated as reuse.
    repeat = await harness.token(client, secret, grant_type="refresh_token", refresh_token=second)
    assert repeat.status == 200 and repeat.body["refresh_token"] == third
    harness.clock.advance(harness.settings.refresh_grace + 1)
    reuse = await harness.token(client, secret, grant_type="refresh_token", refresh_token=first)
    assert reuse.status == 400 and reuse.body["error"] == "invalid_grant"
    newest = await harness.token(client, secret, grant_type="refresh_token", refresh_token=third)
    assert newest.status == 400 and newest.body["error"] == "invalid_grant"


async def test_sealed_successor_is_unreadable_without_the_old_token(harness: Harness) -> None:
    client, secret, refresh = await first_refresh(harness)
    reply = await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    successor = reply.body["refresh_token"]
    old_hash = opaque.lookup_hash(refresh)
    box = dict(await refresh_rows(harness))[old_hash]
    assert box is not None
    assert successor.encode() not in box and reply.body["access_token"].encode() not in box
    aad = old_hash + b"\0" + client.client_id.encode()
    # Everything the store holds (the hash, the box) does not open it ...
    assert opaque.unseal(old_hash.hex(), aad, box) is None
    assert opaque.unseal(successor, aad, box) is None
    # ... only the presented token does, and only for its own client.
    assert opaque.unseal(refresh, old_hash + b"\0other-client", box) is None
    opened = opaque.unseal(refresh, aad, box)
    assert opened is not None and successor.encode() in opened


async def test_repeat_within_grace_by_another_client_fails(harness: Harness) -> None:
    client, secret, refresh = await first_refresh(harness)
    other, other_secret = await harness.client()
    ok = await harness.token(client, secret, grant_type="refresh_token", refresh_token=refresh)
    assert ok.status == 200
    stolen = await harness.token(
        other, other_secret, grant_type="refresh_token", refresh_token=refresh
    )
    assert stolen.status == 400 and stolen.body["error"] == "invalid_grant"
