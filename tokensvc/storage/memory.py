"""In-memory backends: the embedded default of `tokensvc dev` and the reference for the contracts.

Atomicity comes from the event loop: no method awaits between reading and writing its state.
State lives in one process only and is lost on exit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from tokensvc.inprocess import InProcess
from tokensvc.models import (
    Client,
    Federation,
    Grant,
    GrantSummary,
    LogoutDelivery,
    RefreshState,
    Resource,
    SessionGrant,
    Successor,
    User,
)


class MemoryClients(InProcess):
    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self.on_remove: Callable[[str], None] | None = None

    async def get(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    async def add(self, client: Client) -> bool:
        if client.client_id in self._clients:
            return False
        self._clients[client.client_id] = client
        return True

    async def replace(self, client: Client) -> bool:
        old = self._clients.get(client.client_id)
        if old is None:
            return False
        self._clients[client.client_id] = replace(client, created_at=old.created_at)
        return True

    async def touch(self, client_id: str) -> None:
        """One process holds every cache: nothing to announce."""

    async def list(self) -> list[Client]:
        return sorted(self._clients.values(), key=lambda c: (c.created_at, c.client_id))

    async def remove(self, client_id: str) -> bool:
        removed = self._clients.pop(client_id, None) is not None
        if removed and self.on_remove is not None:
            self.on_remove(client_id)
        return removed


R = TypeVar("R", Federation, Resource)


class _Registry(InProcess, Generic[R]):
    """Records registered once under one identifying string and listed oldest first: the
    shape `FederationStore` and `ResourceStore` share."""

    def __init__(self, key: Callable[[R], str]) -> None:
        self._key: Callable[[R], str] = key
        self._records: dict[str, R] = {}

    async def add(self, record: R) -> bool:
        key = self._key(record)
        if key in self._records:
            return False
        self._records[key] = record
        return True

    async def get(self, key: str) -> R | None:
        return self._records.get(key)

    async def list(self) -> list[R]:
        return sorted(self._records.values(), key=lambda r: (r.created_at, self._key(r)))

    async def remove(self, key: str) -> bool:
        return self._records.pop(key, None) is not None


class MemoryFederations(_Registry[Federation]):
    def __init__(self) -> None:
        super().__init__(lambda f: f.issuer)


class MemoryResources(_Registry[Resource]):
    def __init__(self) -> None:
        super().__init__(lambda r: r.identifier)


class MemoryUsers(InProcess):
    def __init__(self) -> None:
        self._by_sub: dict[str, User] = {}
        self._by_username: dict[str, User] = {}

    async def add(self, user: User) -> bool:
        if user.username in self._by_username or user.sub in self._by_sub:
            return False
        self._by_sub[user.sub] = user
        self._by_username[user.username] = user
        return True

    async def by_username(self, username: str) -> User | None:
        return self._by_username.get(username)

    async def by_sub(self, sub: str) -> User | None:
        return self._by_sub.get(sub)


@dataclass(slots=True)
class _Token:
    grant_id: str
    expires_at: float
    retired_at: float | None = None
    successor_box: bytes | None = None


class MemoryLogoutQueue(InProcess):
    """Logout deliveries owed, in this process (`tokensvc dev`): lost when it exits."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[float, LogoutDelivery]] = {}  # id -> (due at, delivery)
        self._queued: set[tuple[str, str]] = set()  # (client_id, sid) ever queued

    def queue(self, client_id: str, sub: str, sid: str, now: float) -> None:
        if (client_id, sid) not in self._queued:
            self._queued.add((client_id, sid))
            delivery = LogoutDelivery(str(uuid.uuid4()), client_id, sub, sid, now)
            self._due[delivery.delivery_id] = (now, delivery)

    async def take_due(self, now: float, lease: float, limit: int) -> list[LogoutDelivery]:
        due = sorted(
            (d for at, d in self._due.values() if at <= now),
            key=lambda d: (d.created_at, d.delivery_id),
        )[:limit]
        for d in due:
            self._due[d.delivery_id] = (now + lease, d)
        return due

    async def retry(self, delivery_id: str, at: float) -> None:
        if delivery_id in self._due:
            d = self._due[delivery_id][1]
            self._due[delivery_id] = (at, replace(d, attempts=d.attempts + 1))

    async def finish(self, delivery_id: str) -> None:
        self._due.pop(delivery_id, None)

    def forget_client(self, client_id: str) -> None:
        for key in [k for k, (_, d) in self._due.items() if d.client_id == client_id]:
            del self._due[key]


class MemoryGrants(InProcess):
    def __init__(self, logouts: MemoryLogoutQueue | None = None) -> None:
        self.logouts = logouts or MemoryLogoutQueue()
        self._grants: dict[str, Grant] = {}
        self._created: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._tokens: dict[bytes, _Token] = {}

    async def issue(
        self, grant: Grant, token_hash: bytes | None, expires_at: float, now: float
    ) -> bool:
        self._grants[grant.grant_id] = grant
        self._created.setdefault(grant.grant_id, now)
        if token_hash is not None:
            self._tokens[token_hash] = _Token(grant.grant_id, expires_at)
        return grant.grant_id not in self._revoked

    async def grant(self, grant_id: str) -> Grant | None:
        return None if grant_id in self._revoked else self._grants.get(grant_id)

    async def inspect(self, token_hash: bytes) -> RefreshState | None:
        token = self._tokens.get(token_hash)
        if token is None or token.grant_id not in self._grants:
            return None
        return RefreshState(
            token_hash=token_hash,
            grant=self._grants[token.grant_id],
            expires_at=token.expires_at,
            retired_at=token.retired_at,
            successor_box=token.successor_box,
            revoked=token.grant_id in self._revoked,
        )

    async def rotate(self, token_hash: bytes, successor: Successor, now: float) -> bool:
        token = self._tokens.get(token_hash)
        if (
            token is None
            or token.retired_at is not None
            or token.grant_id in self._revoked
            or token.expires_at <= now
        ):
            return False
        token.retired_at = now
        token.successor_box = successor.sealed_response
        self._tokens[successor.token_hash] = _Token(token.grant_id, successor.expires_at)
        return True

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        self._revoke(grant_id)

    async def of_person(self, sub: str) -> list[GrantSummary]:
        live = [
            GrantSummary(g.grant_id, g.client_id, g.scope, self._created[g.grant_id], g.resources)
            for g in self._grants.values()
            if g.sub == sub and g.grant_id not in self._revoked
        ]
        return sorted(live, key=lambda g: (g.created_at, g.grant_id))

    async def end_session(self, sub: str, sid: str, now: float) -> list[SessionGrant]:
        live = sorted(
            (
                g
                for g in self._grants.values()
                if g.sub == sub and g.sid == sid and g.grant_id not in self._revoked
            ),
            key=lambda g: (self._created[g.grant_id], g.grant_id),
        )
        ended = []
        for g in live:
            offline = "offline_access" in g.scope.split()
            if not offline:
                self._revoke(g.grant_id)
            ended.append(SessionGrant(g.grant_id, g.client_id, not offline))
            self.logouts.queue(g.client_id, sub, sid, now)
        return ended

    def _revoke(self, grant_id: str) -> None:
        # Rows stay, as in Postgres: a revoked family's tokens must keep failing.
        self._revoked.add(grant_id)

    def forget_client(self, client_id: str) -> None:
        self.logouts.forget_client(client_id)
        gone = {g.grant_id for g in self._grants.values() if g.client_id == client_id}
        self._revoked.update(gone)
        for grant_id in gone:
            del self._grants[grant_id]
            self._created.pop(grant_id, None)
        for key in [k for k, t in self._tokens.items() if t.grant_id in gone]:
            del self._tokens[key]
