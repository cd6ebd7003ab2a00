"""A store that cannot reach its server raises `StoreUnavailable`, quickly, for every method:
never a driver exception, never a hang. Pointed at a closed loopback port (deterministic)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

from tests.contract.backends import NOW
from tests.contract.unreachable import assert_unavailable
from tokensvc.models import Client, CodeRecord, Grant, Successor, User
from tokensvc.opaque import lookup_hash
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.redis_codes import RedisCodes

GRANT = Grant("g", "c", "s", "openid", int(NOW))


async def test_redis_codes_unreachable(closed_port: int) -> None:
    codes = RedisCodes.from_url(f"redis://127.0.0.1:{closed_port}/0")
    record = CodeRecord(GRANT, "https://app.example/cb", NOW + 60)
    try:
        await assert_unavailable("redis", lambda: codes.put(lookup_hash("c"), record, 60))
        await assert_unavailable("redis", lambda: codes.consume(lookup_hash("c")))
        await assert_unavailable("redis", codes.ping)
    finally:
        await codes.close()


async def test_postgres_connect_unreachable(closed_port: int) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"
    await assert_unavailable("postgres", lambda: Postgres.connect(dsn))


async def test_migrate_unreachable(closed_port: int) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"
    await assert_unavailable("postgres", lambda: migrate(dsn))


async def test_postgres_stores_unreachable(lazy_postgres: Postgres) -> None:
    db = lazy_postgres
    client = Client("c", "App", "none", frozenset({"authorization_code"}))
    calls: list[Callable[[], Awaitable[object]]] = [
        db.ping,
        lambda: db.clients.get("c"),
        lambda: db.clients.add(client),
        db.clients.list,
        lambda: db.clients.remove("c"),
        db.clients.ping,
        lambda: db.users.add(User("s", "u", "$argon2id$x")),
        lambda: db.users.by_username("u"),
        lambda: db.users.by_sub("s"),
        db.users.ping,
        lambda: db.grants.issue(GRANT, lookup_hash("t"), NOW + 60, NOW),
        lambda: db.grants.rotate(lookup_hash("t"), Successor(lookup_hash("u"), NOW, b"x"), NOW),
        lambda: db.grants.inspect(lookup_hash("t")),
        lambda: db.grants.grant("g"),
        lambda: db.grants.revoke_grant("g", NOW),
        db.grants.ping,
    ]
    for call in calls:
        await assert_unavailable("postgres", call)


async def test_postgres_silent_server_times_out() -> None:
    """A peer that accepts TCP but never answers (a hung server, a black-holing proxy)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes handshakes; nobody ever reads
        port = listener.getsockname()[1]
        db = await Postgres.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", min_size=0)
        try:
            await assert_unavailable("postgres", lambda: db.clients.get("c"))
        finally:
            await db.close()
