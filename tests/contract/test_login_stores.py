"""The login front-end's store contracts (tokensvc.login): EphemeralStore and FailureLimiter
against memory and Redis, ConsentStore against memory and Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.contract.backends import ConsentBackend, EphemeralBackend, FakeClock, LimiterBackend
from tests.contract.unreachable import assert_unavailable
from tests.servers import create_database_async
from tokensvc.limits.failures import (
    PER_ADDRESS,
    PER_USERNAME,
    Limit,
    MemoryFailureLimiter,
    RedisFailureLimiter,
    key_name,
)
from tokensvc.models import Client
from tokensvc.opaque import lookup_hash, new_value
from tokensvc.storage.consents import PostgresConsents
from tokensvc.storage.ephemeral import MemoryEphemeral, RedisEphemeral
from tokensvc.storage.migrate import default_schema_dir, migrate
from tokensvc.storage.postgres import Postgres


def a_client(client_id: str) -> Client:
    return Client(client_id, f"App {client_id}", "none", frozenset({"authorization_code"}))


def a_key() -> bytes:
    """What the front-end passes: the hash of a fresh cookie value."""
    return lookup_hash(new_value(32))


# --------------------------------------------------------------------------- ephemeral


async def test_put_then_get_leaves_the_record(ephemeral: EphemeralBackend) -> None:
    key = a_key()
    await ephemeral.store.put(key, b"session state", ttl=60)
    assert await ephemeral.store.get(key) == b"session state"
    assert await ephemeral.store.get(key) == b"session state"


async def test_unknown_key_is_none(ephemeral: EphemeralBackend) -> None:
    key = a_key()
    assert await ephemeral.store.get(key) is None
    assert await ephemeral.store.take(key) is None
    await ephemeral.store.delete(key)  # idempotent: nothing to delete is fine


async def test_put_replaces(ephemeral: EphemeralBackend) -> None:
    key = a_key()
    await ephemeral.store.put(key, b"first", ttl=60)
    await ephemeral.store.put(key, b"second", ttl=60)
    assert await ephemeral.store.get(key) == b"second"


async def test_take_returns_once(ephemeral: EphemeralBackend) -> None:
    key = a_key()
    await ephemeral.store.put(key, b"interaction", ttl=60)
    assert await ephemeral.store.take(key) == b"interaction"
    assert await ephemeral.store.take(key) is None
    assert await ephemeral.store.get(key) is None


async def test_delete(ephemeral: EphemeralBackend) -> None:
    key, other = a_key(), a_key()
    await ephemeral.store.put(key, b"doomed", ttl=60)
    await ephemeral.store.put(other, b"kept", ttl=60)
    await ephemeral.store.delete(key)
    assert await ephemeral.store.get(key) is None
    assert await ephemeral.store.take(key) is None
    assert await ephemeral.store.get(other) == b"kept"


async def test_binary_values_round_trip(ephemeral: EphemeralBackend) -> None:
    key = a_key()
    value = bytes(range(256)) * 4
    await ephemeral.store.put(key, value, ttl=60)
    assert await ephemeral.store.get(key) == value


async def test_expired_records_are_never_returned(ephemeral: EphemeralBackend) -> None:
    """One real 1 s wait on Redis; the other backends let the clock jump."""
    short, long_, taken = a_key(), a_key(), a_key()
    await ephemeral.store.put(short, b"short", ttl=1)
    await ephemeral.store.put(taken, b"taken", ttl=1)
    await ephemeral.store.put(long_, b"long", ttl=60)
    await ephemeral.advance(1.2)
    assert await ephemeral.store.get(short) is None
    assert await ephemeral.store.take(taken) is None
    assert await ephemeral.store.get(long_) == b"long"


async def test_thirty_concurrent_takes_yield_exactly_one_value(
    ephemeral: EphemeralBackend,
) -> None:
    key = a_key()
    await ephemeral.store.put(key, b"the one", ttl=60)
    results = await asyncio.gather(*(ephemeral.store.take(key) for _ in range(30)))
    assert results.count(b"the one") == 1
    assert results.count(None) == 29


@pytest.mark.parametrize("ttl", [0, -1, 1.5, True])
async def test_ttl_must_be_whole_positive_seconds(ephemeral: EphemeralBackend, ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await ephemeral.store.put(a_key(), b"v", ttl=ttl)


async def test_ephemeral_ping(ephemeral: EphemeralBackend) -> None:
    assert await ephemeral.store.ping() is None


async def test_redis_ephemeral_key_names(contract_redis: aioredis.Redis) -> None:
    sessions = RedisEphemeral(contract_redis, "session")
    interactions = RedisEphemeral(contract_redis, "interaction")
    key = a_key()
    await sessions.put(key, b"s", ttl=60)
    await interactions.put(key, b"i", ttl=60)
    assert sorted(await contract_redis.keys("*")) == [
        f"tokensvc:interaction:{key.hex()}".encode(),
        f"tokensvc:session:{key.hex()}".encode(),
    ]
    assert 0 < await contract_redis.ttl(f"tokensvc:session:{key.hex()}") <= 60
    # One key, two keyspaces: the records are separate.
    assert await sessions.take(key) == b"s"
    assert await interactions.get(key) == b"i"


@pytest.mark.parametrize("prefix", ["", "code", "fail", "Session", "a:b", "x" * 33])
def test_redis_ephemeral_refuses_bad_or_foreign_prefixes(prefix: str) -> None:
    client = aioredis.Redis()  # never connects: the constructor refuses first
    with pytest.raises(ValueError, match="prefix"):
        RedisEphemeral(client, prefix)


async def test_memory_ephemeral_sweeps_expired_records() -> None:
    clock = FakeClock()
    store = MemoryEphemeral(clock, sweep_interval=60)
    for _ in range(500):
        await store.put(a_key(), b"abandoned", ttl=30)
    assert len(store) == 500
    clock.now += 61
    await store.put(a_key(), b"fresh", ttl=30)  # past the sweep interval: swept
    assert len(store) == 1
    # A burst of live records is not lost to the size-triggered sweep.
    keys = [a_key() for _ in range(3000)]
    for key in keys:
        await store.put(key, b"live", ttl=30)
    assert all([await store.get(key) == b"live" for key in keys])
    clock.now += 31
    for _ in range(3000):  # the dict doubles: swept without waiting for the interval
        await store.put(a_key(), b"burst", ttl=1)
    assert len(store) == 3000  # the burst alone: every expired record is gone


# --------------------------------------------------------------------------- limiter

USERNAME = Limit("username", 3, 300)
ADDRESS = Limit("address", 5, 300)


async def test_allowed_until_max_failures_then_locked(limiter: LimiterBackend) -> None:
    checks = [(USERNAME, "alice")]
    assert await limiter.limiter.retry_after(checks) == 0
    assert await limiter.limiter.record_failure(checks) == 0
    assert await limiter.limiter.record_failure(checks) == 0
    assert await limiter.limiter.retry_after(checks) == 0
    locked = await limiter.limiter.record_failure(checks)
    assert 0 < locked <= USERNAME.window
    assert 0 < await limiter.limiter.retry_after(checks) <= USERNAME.window
    # Failures while locked are counted but never extend the window.
    assert 0 < await limiter.limiter.record_failure(checks) <= USERNAME.window


async def test_other_subjects_and_limits_are_unaffected(limiter: LimiterBackend) -> None:
    for _ in range(USERNAME.max_failures):
        await limiter.limiter.record_failure([(USERNAME, "alice")])
    assert await limiter.limiter.retry_after([(USERNAME, "alice")]) > 0
    assert await limiter.limiter.retry_after([(USERNAME, "bob")]) == 0
    # Another limit with the same subject string has its own counter.
    assert await limiter.limiter.retry_after([(ADDRESS, "alice")]) == 0


async def test_several_checks_answer_together(limiter: LimiterBackend) -> None:
    attempt = [(USERNAME, "carol"), (ADDRESS, "192.0.2.7")]
    for _ in range(USERNAME.max_failures - 1):
        assert await limiter.limiter.record_failure(attempt) == 0
    # The username reaches its limit first, and locks the whole attempt.
    assert await limiter.limiter.record_failure(attempt) > 0
    assert await limiter.limiter.retry_after(attempt) > 0
    assert await limiter.limiter.retry_after([(ADDRESS, "192.0.2.7")]) == 0
    # The address counted every failure too: two more lock it for other usernames.
    other = [(USERNAME, "dave"), (ADDRESS, "192.0.2.7")]
    assert await limiter.limiter.record_failure(other) == 0
    assert await limiter.limiter.record_failure(other) > 0
    assert await limiter.limiter.retry_after([(USERNAME, "dave")]) == 0


async def test_clear_unlocks(limiter: LimiterBackend) -> None:
    checks = [(USERNAME, "alice"), (ADDRESS, "192.0.2.1")]
    for _ in range(USERNAME.max_failures):
        await limiter.limiter.record_failure(checks)
    assert await limiter.limiter.retry_after(checks) > 0
    await limiter.limiter.clear([(USERNAME, "alice")])
    assert await limiter.limiter.retry_after([(USERNAME, "alice")]) == 0
    # The address was not cleared: it keeps its 3 failures, 2 short of its limit.
    assert await limiter.limiter.record_failure([(ADDRESS, "192.0.2.1")]) == 0
    assert await limiter.limiter.record_failure([(ADDRESS, "192.0.2.1")]) > 0
    # Clearing a counter starts it afresh.
    assert await limiter.limiter.record_failure([(USERNAME, "alice")]) == 0
    await limiter.limiter.clear([(USERNAME, "nobody")])  # nothing to clear is fine


async def test_window_end_unlocks(limiter: LimiterBackend) -> None:
    """One real 1 s wait on Redis; the memory clock jumps."""
    quick = Limit("quick", 2, 1)
    checks = [(quick, "alice")]
    await limiter.limiter.record_failure(checks)
    assert await limiter.limiter.record_failure(checks) == 1
    assert await limiter.limiter.retry_after(checks) == 1
    await limiter.advance(1.1)
    assert await limiter.limiter.retry_after(checks) == 0
    # A fresh window: one failure is allowed again.
    assert await limiter.limiter.record_failure(checks) == 0


async def test_no_checks_is_allowed(limiter: LimiterBackend) -> None:
    assert await limiter.limiter.retry_after([]) == 0
    assert await limiter.limiter.record_failure([]) == 0
    await limiter.limiter.clear([])


async def test_concurrent_failures_are_all_counted(limiter: LimiterBackend) -> None:
    many = Limit("many", 30, 300)
    await asyncio.gather(*(limiter.limiter.record_failure([(many, "x")]) for _ in range(29)))
    assert await limiter.limiter.retry_after([(many, "x")]) == 0
    assert await limiter.limiter.record_failure([(many, "x")]) > 0


async def test_limiter_ping(limiter: LimiterBackend) -> None:
    assert await limiter.limiter.ping() is None


def test_default_limits() -> None:
    assert Limit("username", 5, 300) == PER_USERNAME
    assert Limit("address", 20, 300) == PER_ADDRESS


@pytest.mark.parametrize(
    ("name", "max_failures", "window"),
    [("", 5, 300), ("a:b", 5, 300), ("ok", 0, 300), ("ok", 5, 0), ("ok", 5, 1.5)],
)
def test_limit_refuses_nonsense(name: str, max_failures: int, window: int) -> None:
    with pytest.raises(ValueError):
        Limit(name, max_failures, window)


async def test_memory_locks_for_the_rest_of_the_window() -> None:
    clock = FakeClock()
    limiter = MemoryFailureLimiter(clock)
    checks = [(USERNAME, "alice")]
    for _ in range(USERNAME.max_failures):
        await limiter.record_failure(checks)
    assert await limiter.retry_after(checks) == 300
    clock.now += 100.5
    assert await limiter.record_failure(checks) == 200  # rounded up, window not extended
    clock.now += 199.5
    assert await limiter.retry_after(checks) == 0


async def test_memory_limiter_forgets_finished_windows() -> None:
    clock = FakeClock()
    limiter = MemoryFailureLimiter(clock, sweep_interval=60)
    for n in range(2000):  # a password spray: one failure each for many usernames
        await limiter.record_failure([(USERNAME, f"user{n}")])
    assert len(limiter) == 2000
    clock.now += USERNAME.window + 61
    await limiter.record_failure([(USERNAME, "late")])
    assert len(limiter) == 1


async def test_redis_keys_hold_no_subject(contract_redis: aioredis.Redis) -> None:
    limiter = RedisFailureLimiter(contract_redis)
    await limiter.record_failure([(USERNAME, "alice@example.com"), (ADDRESS, "192.0.2.55")])
    keys = sorted(await contract_redis.keys("*"))
    digest = hashlib.sha256(b"alice@example.com").hexdigest()
    assert f"tokensvc:fail:username:{digest}".encode() in keys
    assert key_name(USERNAME, "alice@example.com") == f"tokensvc:fail:username:{digest}"
    assert len(keys) == 2
    for key in keys:
        assert b"alice" not in key and b"192.0.2.55" not in key
        assert key.startswith(b"tokensvc:fail:")
        assert 0 < await contract_redis.ttl(key) <= 300


async def test_redis_window_is_not_extended(contract_redis: aioredis.Redis) -> None:
    limiter = RedisFailureLimiter(contract_redis)
    checks = [(USERNAME, "alice")]
    for _ in range(USERNAME.max_failures):
        await limiter.record_failure(checks)
    key = key_name(USERNAME, "alice")
    before = await contract_redis.pttl(key)
    await asyncio.sleep(0.05)
    await limiter.record_failure(checks)
    await limiter.retry_after(checks)
    assert 0 < await contract_redis.pttl(key) < before
    assert int(await contract_redis.get(key)) == USERNAME.max_failures + 1


async def test_redis_counter_without_expiry_is_healed(contract_redis: aioredis.Redis) -> None:
    """A counter that lost its expiry (written by hand) must not lock a subject for good."""
    limiter = RedisFailureLimiter(contract_redis)
    key = key_name(USERNAME, "alice")
    await contract_redis.set(key, 10)
    assert await limiter.retry_after([(USERNAME, "alice")]) == USERNAME.window
    assert 0 < await contract_redis.ttl(key) <= USERNAME.window


# --------------------------------------------------------------------------- consents


async def test_nothing_granted_yet(consents: ConsentBackend) -> None:
    assert await consents.consents.granted("sub-1", "client-1") == frozenset()


async def test_grants_accumulate(consents: ConsentBackend) -> None:
    await consents.clients.add(a_client("client-1"))
    await consents.consents.grant("sub-1", "client-1", ["openid", "email"])
    assert await consents.consents.granted("sub-1", "client-1") == {"openid", "email"}
    await consents.consents.grant("sub-1", "client-1", {"profile", "openid"})
    assert await consents.consents.granted("sub-1", "client-1") == {"openid", "email", "profile"}
    # Granting less takes nothing away; granting nothing writes nothing.
    await consents.consents.grant("sub-1", "client-1", ["openid"])
    await consents.consents.grant("sub-1", "client-1", [])
    assert await consents.consents.granted("sub-1", "client-1") == {"openid", "email", "profile"}


async def test_consents_are_per_person_and_client(consents: ConsentBackend) -> None:
    await consents.clients.add(a_client("client-1"))
    await consents.clients.add(a_client("client-2"))
    await consents.consents.grant("sub-1", "client-1", ["openid", "email"])
    await consents.consents.grant("sub-2", "client-1", ["openid", "profile"])
    await consents.consents.grant("sub-1", "client-2", ["openid"])
    assert await consents.consents.granted("sub-1", "client-1") == {"openid", "email"}
    assert await consents.consents.granted("sub-2", "client-1") == {"openid", "profile"}
    assert await consents.consents.granted("sub-1", "client-2") == {"openid"}
    assert await consents.consents.granted("sub-2", "client-2") == frozenset()


async def test_of_person_lists_every_client_consented_to(consents: ConsentBackend) -> None:
    assert await consents.consents.of_person("sub-1") == {}
    for client_id in ("client-1", "client-2"):
        await consents.clients.add(a_client(client_id))
    await consents.consents.grant("sub-1", "client-1", ["openid", '"https://api.example.com'])
    await consents.consents.grant("sub-1", "client-2", ["email"])
    await consents.consents.grant("sub-2", "client-2", ["profile"])
    assert await consents.consents.of_person("sub-1") == {
        "client-1": {"openid", '"https://api.example.com'},
        "client-2": {"email"},
    }


async def test_withdraw_forgets_one_pair_only(consents: ConsentBackend) -> None:
    for client_id in ("client-1", "client-2"):
        await consents.clients.add(a_client(client_id))
    await consents.consents.grant("sub-1", "client-1", ["openid", "email"])
    await consents.consents.grant("sub-1", "client-2", ["openid"])
    await consents.consents.grant("sub-2", "client-1", ["openid"])
    await consents.consents.withdraw("sub-1", "client-1")
    await consents.consents.withdraw("sub-1", "client-1")  # idempotent
    await consents.consents.withdraw("sub-1", "never-registered")
    assert await consents.consents.granted("sub-1", "client-1") == frozenset()
    assert await consents.consents.of_person("sub-1") == {"client-2": {"openid"}}
    assert await consents.consents.granted("sub-2", "client-1") == {"openid"}
    # Consent given again after a withdrawal starts from nothing.
    await consents.consents.grant("sub-1", "client-1", ["profile"])
    assert await consents.consents.granted("sub-1", "client-1") == {"profile"}


async def test_concurrent_grants_lose_no_scope(consents: ConsentBackend) -> None:
    await consents.clients.add(a_client("client-1"))
    scopes = [f"scope{n}" for n in range(20)]
    await asyncio.gather(
        *(consents.consents.grant("sub-1", "client-1", ["openid", s]) for s in scopes)
    )
    assert await consents.consents.granted("sub-1", "client-1") == {"openid", *scopes}


async def test_removing_a_client_forgets_its_consents(consents: ConsentBackend) -> None:
    await consents.clients.add(a_client("doomed"))
    await consents.clients.add(a_client("kept"))
    await consents.consents.grant("sub-1", "doomed", ["openid"])
    await consents.consents.grant("sub-1", "kept", ["openid"])
    assert await consents.clients.remove("doomed") is True
    assert await consents.consents.granted("sub-1", "doomed") == frozenset()
    assert await consents.consents.granted("sub-1", "kept") == {"openid"}
    # Registered again under the same id, it starts without consent.
    await consents.clients.add(a_client("doomed"))
    assert await consents.consents.granted("sub-1", "doomed") == frozenset()


@pytest.mark.parametrize(
    ("scopes", "error"),
    [("openid email", TypeError), (["openid email"], ValueError), ([""], ValueError)],
)
async def test_grant_refuses_what_is_not_scope_tokens(
    consents: ConsentBackend, scopes: object, error: type[Exception]
) -> None:
    await consents.clients.add(a_client("client-1"))
    with pytest.raises(error):
        await consents.consents.grant("sub-1", "client-1", scopes)  # type: ignore[arg-type]
    assert await consents.consents.granted("sub-1", "client-1") == frozenset()


async def test_consents_ping(consents: ConsentBackend) -> None:
    assert await consents.consents.ping() is None


async def test_postgres_grant_for_a_vanished_client_stores_nothing(postgres: Postgres) -> None:
    store = PostgresConsents(postgres)
    await store.grant("sub-1", "never-registered", ["openid"])
    assert await store.granted("sub-1", "never-registered") == frozenset()


async def test_postgres_keeps_scopes_sorted_and_distinct(postgres: Postgres) -> None:
    store = PostgresConsents(postgres)
    await postgres.clients.add(a_client("client-1"))
    await store.grant("sub-1", "client-1", ["profile", "openid"])
    await store.grant("sub-1", "client-1", ["email", "openid"])
    async with postgres.connection() as conn:
        row = await conn.fetchrow("SELECT scopes, granted_at FROM consents")
    assert row["scopes"] == ["email", "openid", "profile"]
    assert row["granted_at"] is not None


async def test_0002_upgrades_a_database_with_clients(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    """Clients registered before 0002 keep working: they read as `require_consent=False`."""
    dsn = await create_database_async(postgres_admin_url, "login_upgrade")
    only_initial = tmp_path / "schema"
    only_initial.mkdir()
    shutil.copy(default_schema_dir() / "0001_initial.sql", only_initial)
    assert await migrate(dsn, only_initial) == ["0001_initial"]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO clients (client_id, name, auth_method) VALUES ('old', 'Old', 'none')"
        )
    finally:
        await conn.close()
    assert "0002_login" in await migrate(dsn)
    db = await Postgres.connect(dsn)
    try:
        old = await db.clients.get("old")
        assert old is not None and old.require_consent is False
        await PostgresConsents(db).grant("sub-1", "old", ["openid"])
        assert await PostgresConsents(db).granted("sub-1", "old") == {"openid"}
    finally:
        await db.close()


# --------------------------------------------------------------------------- unavailable


async def test_redis_ephemeral_unreachable(closed_port: int) -> None:
    store = RedisEphemeral.from_url(f"redis://127.0.0.1:{closed_port}/0", "session")
    key = a_key()
    try:
        await assert_unavailable("redis", lambda: store.put(key, b"v", 60))
        await assert_unavailable("redis", lambda: store.get(key))
        await assert_unavailable("redis", lambda: store.take(key))
        await assert_unavailable("redis", lambda: store.delete(key))
        await assert_unavailable("redis", store.ping)
    finally:
        await store.close()


async def test_redis_limiter_unreachable(closed_port: int) -> None:
    limiter = RedisFailureLimiter.from_url(f"redis://127.0.0.1:{closed_port}/0")
    checks = [(USERNAME, "alice")]
    try:
        await assert_unavailable("redis", lambda: limiter.retry_after(checks))
        await assert_unavailable("redis", lambda: limiter.record_failure(checks))
        await assert_unavailable("redis", lambda: limiter.clear(checks))
        await assert_unavailable("redis", limiter.ping)
    finally:
        await limiter.close()


async def test_postgres_consents_unreachable(lazy_postgres: Postgres) -> None:
    store = PostgresConsents(lazy_postgres)
    await assert_unavailable("postgres", lambda: store.granted("sub-1", "client-1"))
    await assert_unavailable("postgres", lambda: store.grant("sub-1", "client-1", ["openid"]))
    await assert_unavailable("postgres", store.ping)


# --------------------------------------------------------------------------- boundary

# What the login front-end must never load: signing keys, grants, the code store, the token
# service's wiring (SPEC: it "holds no signing keys and never sees tokens").
FORBIDDEN = (
    "tokensvc.signing",
    "tokensvc.grants",
    "tokensvc.storage.redis_codes",
    "tokensvc.storage.memory_codes",
    "tokensvc.wiring.stores",
    "tokensvc.service",
    "tokensvc.http.appkeys",
)


def test_login_stores_import_nothing_of_the_token_service() -> None:
    code = (
        "import sys, tokensvc.storage.ephemeral, tokensvc.limits.failures, "
        "tokensvc.storage.consents; print('\\n'.join(sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    leaked = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert leaked == []
