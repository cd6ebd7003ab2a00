"""What the contract tests hold on to: one bundle per backend, and the fixed test clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tokensvc.limits.failures import FailureLimiter
from tokensvc.storage.protocols import (
    ClientStore,
    CodeStore,
    ConsentStore,
    EphemeralStore,
    GrantStore,
    LogoutQueue,
    UserStore,
)

NOW = 1_700_000_000.0  # every test's "now": stores take the time from their caller


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass: a memory backend's `advance`."""
        self.now += seconds


@dataclass
class CodeBackend:
    name: str
    store: CodeStore
    # Let `seconds` pass as far as the store's expiry is concerned.
    advance: Callable[[float], Awaitable[None]]


@dataclass
class Stores:
    name: str
    clients: ClientStore
    users: UserStore
    grants: GrantStore
    # Refresh-token rows in a family, retired and revoked ones included: read by the test
    # from the backend's own state, never through a production method.
    count_tokens: Callable[[str], Awaitable[int]]
    logouts: LogoutQueue  # what `grants.end_session` queues

    async def warm(self, connections: int) -> None:
        """Have `connections` pooled connections open, so that a race between that many calls
        is decided by the store and not serialised by connection set-up."""
        await asyncio.gather(*(self.grants.ping() for _ in range(connections)))


@dataclass
class EphemeralBackend:
    name: str
    store: EphemeralStore
    # Let `seconds` pass as far as the store's expiry is concerned.
    advance: Callable[[float], Awaitable[None]]


@dataclass
class LimiterBackend:
    name: str
    limiter: FailureLimiter
    advance: Callable[[float], Awaitable[None]]


@dataclass
class ConsentBackend:
    name: str
    consents: ConsentStore
    clients: ClientStore  # consents are given to registered clients, and go with them
