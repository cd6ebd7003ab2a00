"""ResourceStore contract (resource servers, RFC 8707): memory and Postgres; clients keep the
resources they may get tokens for; the in-process cache `/token` reads them through."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.backends import NOW, FakeClock, Stores
from tests.contract.test_clients_users import a_client
from tokensvc.models import Resource
from tokensvc.storage.cache import NEGATIVE_TTL, CachedClients, CachedResources
from tokensvc.storage.memory import MemoryClients, MemoryResources
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.protocols import ResourceStore

API = "https://api.example.com"
URN = "urn:example:billing"


@pytest.fixture(params=["memory", "postgres"])
def resources(request: pytest.FixtureRequest) -> ResourceStore:
    if request.param == "memory":
        return MemoryResources()
    db: Postgres = request.getfixturevalue("postgres")
    return db.resources


def a_resource(identifier: str = API, created_at: float = NOW, **changes: object) -> Resource:
    fields: dict[str, object] = {
        "identifier": identifier,
        "scopes": frozenset({"orders:read", "orders:write"}),
        "created_at": created_at,
    }
    fields.update(changes)
    return Resource(**fields)  # type: ignore[arg-type]


async def test_added_resources_read_back_as_stored(resources: ResourceStore) -> None:
    named = a_resource(name="Orders API", access_token_ttl=300)
    bare = a_resource(URN, created_at=NOW + 1, scopes=frozenset({"invoices"}))
    assert await resources.add(named) is True
    assert await resources.add(bare) is True
    assert await resources.get(API) == named
    assert await resources.get(URN) == bare
    assert await resources.get("https://unknown.example") is None
    assert await resources.get(API + "/") is None  # identifiers are exact strings
    assert await resources.list() == [named, bare]  # oldest first


async def test_an_identifier_is_added_once(resources: ResourceStore) -> None:
    first = a_resource()
    assert await resources.add(first) is True
    assert await resources.add(a_resource(scopes=frozenset({"other"}))) is False
    assert await resources.get(API) == first


async def test_of_concurrent_adds_of_one_identifier_exactly_one_wins(
    resources: ResourceStore,
) -> None:
    candidates = [a_resource(name=f"candidate {i}") for i in range(20)]
    added = await asyncio.gather(*(resources.add(r) for r in candidates))
    assert added.count(True) == 1
    assert await resources.get(API) == candidates[added.index(True)]


async def test_remove(resources: ResourceStore) -> None:
    await resources.add(a_resource())
    assert await resources.remove(API) is True
    assert await resources.remove(API) is False
    assert await resources.get(API) is None
    assert await resources.list() == []


async def test_ping(resources: ResourceStore) -> None:
    assert await resources.ping() is None


# --------------------------------------------------------------------------- clients


async def test_a_client_keeps_its_resources_in_order(stores: Stores) -> None:
    """What `client add --resource` registered comes back from every backend, as given."""
    machine = a_client("machine", resources=(URN, API))
    plain = a_client("plain", created_at=NOW + 1)
    assert await stores.clients.add(machine) is True
    assert await stores.clients.add(plain) is True
    assert await stores.clients.get("machine") == machine
    assert await stores.clients.get("plain") == plain and plain.resources == ()
    assert await stores.clients.list() == [machine, plain]


# --------------------------------------------------------------------------- the cache


TTL = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


async def test_cached_resources_are_stale_for_at_most_the_ttl(clock: FakeClock) -> None:
    behind = MemoryResources()  # what another replica or the CLI writes to
    cached = CachedResources(behind, TTL, clock=clock)
    await behind.add(a_resource())
    first = await cached.get(API)
    assert first is not None
    await behind.remove(API)
    await clock.advance(TTL - 0.1)
    assert await cached.get(API) == first  # served from memory
    await clock.advance(0.1)
    assert await cached.get(API) is None


async def test_an_unknown_identifier_is_remembered_briefly(clock: FakeClock) -> None:
    behind = MemoryResources()
    cached = CachedResources(behind, TTL, clock=clock)
    assert await cached.get(API) is None
    await behind.add(a_resource())
    assert await cached.get(API) is None
    await clock.advance(NEGATIVE_TTL)
    assert await cached.get(API) == a_resource()


async def test_changes_made_through_the_cache_are_seen_at_once(clock: FakeClock) -> None:
    cached = CachedResources(MemoryResources(), TTL, clock=clock)
    assert await cached.get(API) is None
    assert await cached.add(a_resource()) is True
    assert await cached.get(API) == a_resource()
    assert await cached.list() == [a_resource()]
    assert await cached.remove(API) is True
    assert await cached.get(API) is None


async def test_the_cache_holds_at_most_maxsize_entries(clock: FakeClock) -> None:
    cached = CachedResources(MemoryResources(), TTL, clock=clock, maxsize=3)
    for i in range(10):
        await cached.get(f"https://api{i}.example")
    assert len(cached._entries) == 3


async def test_clients_are_cached_by_their_id_the_same_way(clock: FakeClock) -> None:
    behind = MemoryClients()
    cached = CachedClients(behind, TTL, clock=clock)
    client = a_client()
    assert await cached.add(client) is True
    assert await cached.get(client.client_id) == client
    await behind.remove(client.client_id)
    assert await cached.get(client.client_id) == client
    await clock.advance(TTL)
    assert await cached.get(client.client_id) is None


async def test_the_cache_in_front_of_postgres_sees_a_removal_within_the_ttl(
    postgres: Postgres, clock: FakeClock
) -> None:
    cached = CachedResources(postgres.resources, TTL, clock=clock)
    await postgres.resources.add(a_resource(name="Orders"))
    assert await cached.get(API) == a_resource(name="Orders")
    await postgres.resources.remove(API)  # `tokensvc resource remove`, another process
    assert await cached.get(API) is not None
    await clock.advance(TTL)
    assert await cached.get(API) is None
