"""Storage contracts. Each backend (memory, Redis, Postgres) must keep the guarantees stated here;
`tests/contract` runs one suite per protocol against every backend.

Common rules for every implementation:
* Keys are lookup hashes (`tokensvc.opaque.lookup_hash`); no raw code, token or secret is stored.
* Driver and network failures are raised as `tokensvc.errors.StoreUnavailable`, never as driver
  exceptions, and never as OAuth errors: storage reports typed outcomes, the grants decide.
* Times are Unix epoch seconds (float) supplied by the caller's clock, so tests control time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tokensvc.models import Client, CodeRecord, CodeReplayed, Grant, RefreshState, Successor, User

# Seconds a used code is remembered so that its replay still revokes the grant.
USED_CODE_MEMORY = 600


class CodeStore(Protocol):
    """One-time authorization codes (Redis in production)."""

    async def put(self, code_hash: bytes, record: CodeRecord, ttl: int) -> None:
        """Store a new code for `ttl` seconds. Returns only once the code is stored."""

    async def consume(self, code_hash: bytes) -> CodeRecord | CodeReplayed | None:
        """Atomically take a code: of any number of concurrent calls for one live code exactly
        one gets the `CodeRecord`. Later calls get `CodeReplayed` (with the grant to revoke) for
        a while after the code's use (at least the code's own lifetime), then `None`, as do
        unknown and expired codes. One round trip; never a read followed by a delete."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    async def close(self) -> None: ...


class ClientStore(Protocol):
    """Registered clients. `get` is on the hot path: implementations may serve it from an
    in-process cache whose staleness is bounded (see `storage.cache.CachedClients`)."""

    async def get(self, client_id: str) -> Client | None: ...

    async def add(self, client: Client) -> bool:
        """Register a client; `False` (and nothing written) if the id is taken."""

    async def list(self) -> list[Client]: ...

    async def remove(self, client_id: str) -> bool:
        """Delete a client and every grant and refresh token issued to it."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class UserStore(Protocol):
    """People who sign in at the login front-end (argon2id password hashes)."""

    async def add(self, user: User) -> bool:
        """Create a user; `False` (and nothing written) if the username is taken."""

    async def by_username(self, username: str) -> User | None: ...

    async def by_sub(self, sub: str) -> User | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Rotated:
    """The presented token was live and is now retired; the caller's successor is stored."""

    state: RefreshState


@dataclass(frozen=True, slots=True)
class Repeated:
    """The token was rotated by an earlier request less than `grace` seconds ago: answer with
    that request's sealed response (the same successor), creating nothing new."""

    sealed_response: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """Unknown, expired or revoked token, or reuse after the grace window (`reused=True`:
    the whole family has just been revoked, newest token included)."""

    reused: bool = False


RotateOutcome = Rotated | Repeated | Rejected
SuccessorFactory = Callable[[RefreshState], Successor]


class GrantStore(Protocol):
    """Grants and their rotating refresh-token families (Postgres in production)."""

    async def issue(
        self, grant: Grant, token_hash: bytes | None, expires_at: float, now: float
    ) -> bool:
        """Durably store the grant with its first refresh token (none when the client gets no
        refresh tokens: the grant is still kept, for `/userinfo` and revocation), atomically.
        Returns whether
        the grant is live: a code replay may race its first exchange and revoke the grant
        before this call (leaving a tombstone); the grant and token are then stored revoked,
        exactly as if the replay had come after, and `False` is returned."""

    async def rotate(
        self, token_hash: bytes, now: float, grace: float, successor: SuccessorFactory
    ) -> RotateOutcome:
        """Exchange a refresh token for its successor.

        If the token is live, `successor(state)` is called (it may raise to refuse, and then
        nothing is written) and, in one atomic statement, the old token is retired, the
        successor's sealed response attached to it and the new token inserted. However many
        calls race on one token, exactly one successor row is created: the others get
        `Repeated` when within `grace` seconds of the rotation, else `Rejected(reused=True)`
        after revoking the family. `grace=0` therefore lets exactly one call succeed."""

    async def grant(self, grant_id: str) -> Grant | None:
        """The grant if it is stored and not revoked (what an access token of it relies on)."""

    async def inspect(self, token_hash: bytes) -> RefreshState | None:
        """A refresh token's current state, whatever it is (for introspection); no writes."""

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        """Revoke a grant and every refresh token of its family. Idempotent; works even before
        `issue` stored the grant (it then leaves a tombstone that `issue` keeps revoked)."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
