"""CodeStore contract (tokensvc.storage.protocols.CodeStore): memory and Redis."""

from __future__ import annotations

import asyncio

from tests.contract.backends import NOW, CodeBackend
from tokensvc.models import CodeRecord, CodeReplayed, Grant
from tokensvc.opaque import lookup_hash, new_value


def a_code(grant_id: str = "g1") -> tuple[bytes, CodeRecord]:
    grant = Grant(
        grant_id=grant_id,
        client_id="client-1",
        sub="user-1",
        scope="openid email",
        auth_time=int(NOW) - 30,
        acr="urn:acr:pwd",
        amr=("pwd",),
        sid="sid-1",
        claims={"email": "a@example.com", "nested": {"n": 1}},
    )
    record = CodeRecord(
        grant=grant,
        redirect_uri="https://app.example/cb",
        expires_at=NOW + 60,
        nonce="n-0S6",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method="S256",
    )
    return lookup_hash(new_value(32)), record


async def test_put_then_consume_returns_the_record(codes: CodeBackend) -> None:
    code_hash, record = a_code()
    await codes.store.put(code_hash, record, ttl=60)
    assert await codes.store.consume(code_hash) == record


async def test_unknown_code_is_none(codes: CodeBackend) -> None:
    assert await codes.store.consume(lookup_hash("never-issued")) is None


async def test_consumed_exactly_once_then_replay_names_the_grant(codes: CodeBackend) -> None:
    code_hash, record = a_code("grant-replayed")
    await codes.store.put(code_hash, record, ttl=60)
    assert await codes.store.consume(code_hash) == record
    assert await codes.store.consume(code_hash) == CodeReplayed("grant-replayed")
    assert await codes.store.consume(code_hash) == CodeReplayed("grant-replayed")


async def test_codes_are_independent(codes: CodeBackend) -> None:
    first, second = a_code("g-a"), a_code("g-b")
    await codes.store.put(*first, ttl=60)
    await codes.store.put(*second, ttl=60)
    assert await codes.store.consume(first[0]) == first[1]
    assert await codes.store.consume(second[0]) == second[1]


async def test_unused_code_expires(codes: CodeBackend) -> None:
    code_hash, record = a_code()
    await codes.store.put(code_hash, record, ttl=1)
    await codes.advance(1.2)
    assert await codes.store.consume(code_hash) is None


async def test_replay_is_still_recognised_after_the_code_lifetime(codes: CodeBackend) -> None:
    code_hash, record = a_code("grant-late-replay")
    await codes.store.put(code_hash, record, ttl=1)
    assert await codes.store.consume(code_hash) == record
    await codes.advance(1.2)
    assert await codes.store.consume(code_hash) == CodeReplayed("grant-late-replay")


async def test_fifty_concurrent_consumes_yield_exactly_one_record(codes: CodeBackend) -> None:
    code_hash, record = a_code("grant-raced")
    await codes.store.put(code_hash, record, ttl=60)
    results = await asyncio.gather(*(codes.store.consume(code_hash) for _ in range(50)))
    assert results.count(record) == 1
    assert results.count(CodeReplayed("grant-raced")) == 49


async def test_ping(codes: CodeBackend) -> None:
    assert await codes.store.ping() is None
