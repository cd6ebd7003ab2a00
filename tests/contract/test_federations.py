"""FederationStore contract (trusted issuers of workload tokens): memory and Postgres."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.backends import NOW
from tokensvc.models import Federation
from tokensvc.storage.memory import MemoryFederations
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.protocols import FederationStore

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x-coord", "y": "y-coord", "kid": "k1"}]}


@pytest.fixture(params=["memory", "postgres"])
def federations(request: pytest.FixtureRequest) -> FederationStore:
    if request.param == "memory":
        return MemoryFederations()
    db: Postgres = request.getfixturevalue("postgres")
    return db.federations


async def test_added_federations_read_back_as_stored(federations: FederationStore) -> None:
    inline = Federation("https://kubernetes.default.svc", jwks=JWKS, created_at=NOW)
    remote = Federation(
        "https://spire.example.org", jwks_uri="https://spire.example.org/keys", created_at=NOW + 1
    )
    assert await federations.add(inline) is True
    assert await federations.add(remote) is True
    assert await federations.get(inline.issuer) == inline
    assert await federations.get(remote.issuer) == remote
    assert await federations.get("https://unknown.example") is None
    assert await federations.list() == [inline, remote]  # oldest first


async def test_an_issuer_is_added_once(federations: FederationStore) -> None:
    first = Federation("https://ci.example", jwks=JWKS, created_at=NOW)
    again = Federation("https://ci.example", jwks_uri="https://ci.example/jwks", created_at=NOW)
    assert await federations.add(first) is True
    assert await federations.add(again) is False
    assert await federations.get("https://ci.example") == first


async def test_of_concurrent_adds_of_one_issuer_exactly_one_wins(
    federations: FederationStore,
) -> None:
    candidates = [
        Federation("https://race.example", jwks_uri=f"https://race.example/{i}", created_at=NOW)
        for i in range(20)
    ]
    added = await asyncio.gather(*(federations.add(f) for f in candidates))
    assert added.count(True) == 1
    assert await federations.get("https://race.example") == candidates[added.index(True)]


async def test_remove(federations: FederationStore) -> None:
    await federations.add(Federation("https://gone.example", jwks=JWKS, created_at=NOW))
    assert await federations.remove("https://gone.example") is True
    assert await federations.remove("https://gone.example") is False
    assert await federations.get("https://gone.example") is None
    assert await federations.list() == []


async def test_ping(federations: FederationStore) -> None:
    assert await federations.ping() is None
