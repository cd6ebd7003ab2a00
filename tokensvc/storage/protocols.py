"""Storage contracts: every store protocol of tokensvc and the invariants its backends keep.

`tests/contract` runs one suite per protocol against every backend it has (memory, Redis, a
Redis Cluster, Postgres); `tests/unit/test_store_contracts.py` checks that this index is
complete and that each protocol has its suite.

* `CodeStore`, authorization codes: memory, Redis, Redis Cluster, Sentinel (`test_codes.py`)
* `ClientStore`, `UserStore`: memory, Postgres (`test_clients_users.py`)
* `GrantStore`, grants and refresh-token families: memory, Postgres (`test_grants.py`)
* `LogoutQueue`, back-channel logout deliveries: memory, Postgres (`test_grants.py`)
* `FederationStore`, trusted issuers of workload tokens: memory, Postgres
  (`test_federations.py`)
* `ResourceStore`, resource servers (RFC 8707): memory, Postgres (`test_resources.py`)
* `DenyList`, revoked access tokens: memory, Redis, Redis Cluster (`test_denylist.py`)
* `ReplayStore`, values accepted once (assertion `jti`s): memory, Redis, Redis Cluster
  (`test_replay.py`)
* `EphemeralStore`, login sessions and pending sign-ins: memory, Redis, Redis Cluster
  (`test_login_stores.py`)
* `ConsentStore`, remembered consent: memory, Postgres (`test_login_stores.py`)
* `RateLimiter` (`tokensvc.limits.buckets`), rate buckets: memory, Redis, Redis Cluster
  (`test_limits.py`)
* `Lockouts` (`tokensvc.limits.lockout`), invalid_client lockouts: memory, Redis, Redis
  Cluster (`test_limits.py`)
* `FailureLimiter` (`tokensvc.limits.failures`), failure counters: memory, Redis, Redis
  Cluster (`test_login_stores.py`)

The three limits live with their policy in `tokensvc.limits` (a sibling layer of this one), so
they are listed here rather than defined.

Common rules for every implementation:
* Keys are lookup hashes (`tokensvc.opaque.lookup_hash`); no raw code, token or secret is stored.
* Driver and network failures are raised as `tokensvc.errors.StoreUnavailable`, never as driver
  exceptions, and never as OAuth errors: storage reports typed outcomes, the grants decide.
* Times are Unix epoch seconds (float) supplied by the caller's clock, so tests control time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from tokensvc.models import (
    Client,
    CodeRecord,
    CodeReplayed,
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

    async def replace(self, client: Client) -> bool:
        """Store `client` in place of the registered client of its id, keeping only the
        registration time (`created_at`) of the old record; `False` (and nothing written) if
        there is none. Its grants and refresh tokens stay."""

    async def touch(self, client_id: str) -> None:
        """Announce a change of the client without changing it: every replica's caches
        reload it (a revoked reused token, tokensvc.machinetokens, is then handed out by none).
        """

    async def list(self) -> list[Client]: ...

    async def remove(self, client_id: str) -> bool:
        """Delete a client and every grant and refresh token issued to it."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class FederationStore(Protocol):
    """Trusted issuers of workload tokens (`federated_jwt`), read when such a client
    authenticates; implementations may cache reads like `ClientStore.get`."""

    async def add(self, federation: Federation) -> bool:
        """Trust an issuer; `False` (and nothing written) if it is trusted already."""

    async def get(self, issuer: str) -> Federation | None: ...

    async def list(self) -> list[Federation]:
        """Every federation, oldest first."""

    async def remove(self, issuer: str) -> bool:
        """Stop trusting an issuer; its clients then fail to authenticate."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class ResourceStore(Protocol):
    """Resource servers (RFC 8707) access tokens can be issued for, read on every token request
    that names one; implementations may cache reads like `ClientStore.get`."""

    async def add(self, resource: Resource) -> bool:
        """Register a resource; `False` (and nothing written) if its identifier exists."""

    async def get(self, identifier: str) -> Resource | None: ...

    async def list(self) -> list[Resource]:
        """Every resource, oldest first."""

    async def remove(self, identifier: str) -> bool:
        """Remove a resource: no new token names it (within the cache's staleness)."""

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

    async def rotate(self, token_hash: bytes, successor: Successor, now: float) -> bool:
        """Retire a live refresh token and store its successor, atomically: in one step the
        old token is marked retired at `now`, the successor's sealed response is attached to
        it and the new token is inserted in the same family. Live means stored, not retired,
        not expired at `now` and of a grant not revoked; for anything else nothing is written
        and `False` is returned. However many calls race on one token, exactly one returns
        `True`, so exactly one successor exists. What a token's state means (repeat within
        the grace window, reuse) is decided by the caller (`tokensvc.grants.rotation`)."""

    async def grant(self, grant_id: str) -> Grant | None:
        """The grant if it is stored and not revoked (what an access token of it relies on)."""

    async def inspect(self, token_hash: bytes) -> RefreshState | None:
        """A refresh token's current state, whatever it is (for rotation and introspection);
        `None` if it is not stored. No writes."""

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        """Revoke a grant and every refresh token of its family. Idempotent; works even before
        `issue` stored the grant (it then leaves a tombstone that `issue` keeps revoked)."""

    async def of_person(self, sub: str) -> list[GrantSummary]:
        """The live (stored, not revoked) grants of `sub`, oldest first."""

    async def end_session(self, sub: str, sid: str, now: float) -> list[SessionGrant]:
        """The browser session `sid` of `sub` ended (OIDC RP-Initiated Logout 1.0): revoke, as
        `revoke_grant` does and in one step, each of its live grants whose scope lacks
        `offline_access`, and return every grant of the session that was live, oldest first
        (`ended` for those revoked now). Grants of the session revoked already are not
        returned; calling it again returns only the offline grants. In the same step, one
        `LogoutDelivery` per client of those grants is queued in the `LogoutQueue` (once per
        client and session, however often the session is ended)."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class LogoutQueue(Protocol):
    """Back-channel logout tokens owed (OIDC Back-Channel Logout 1.0 §2.5), durable: queued by
    `GrantStore.end_session` in the step that ends the session's grants, taken by every
    token-service replica's deliverer.

    * `take_due(now, lease, limit)`: up to `limit` deliveries due at `now` (queued, or retried
      and their time come), oldest first, each leased: no other call gets it for `lease`
      seconds, so concurrent callers never share one, and one whose taker died comes back
      after the lease.
    * `retry(id, at)` counts an attempt and makes it due at `at`; `finish(id)` removes it
      (delivered, or given up). Both are harmless for an id that is gone.
    """

    async def take_due(self, now: float, lease: float, limit: int) -> list[LogoutDelivery]: ...

    async def retry(self, delivery_id: str, at: float) -> None: ...

    async def finish(self, delivery_id: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class DenyList(Protocol):
    """Revoked access tokens by `jti` (RFC 7009 §2), shared by every replica (Redis).

    * After `add(jti, until)` returns, `contains(jti)` is true on every replica until `until`;
      after it the entry goes (Redis: within a second, its expiry being whole seconds), so
      the list holds no more than the revoked tokens still alive.
    * `add` with an `until` already past writes nothing; adding a `jti` again is harmless
      (a token's `exp` never changes, so neither does its `until`).
    * Failures of the backing server raise `tokensvc.errors.StoreUnavailable`, nothing else.
    """

    async def add(self, jti: str, until: float) -> None:
        """Refuse `jti` until `until` (epoch seconds). Idempotent."""

    async def contains(self, jti: str) -> bool: ...


class ReplayStore(Protocol):
    """Values accepted once (RFC 7523 §3 `jti`): the first use of a key wins.

    * `first_use(key, until)` is true for exactly one of any number of concurrent calls with
      one key, on every replica sharing the store, and false for every later call until
      `until`; after that the key may be forgotten (a value that expired is refused anyway).
    * Keys are hashes chosen by the caller; nothing presented is stored as it came.
    * Failures of the backing server raise `tokensvc.errors.StoreUnavailable`, nothing else.
    """

    async def first_use(self, key: bytes, until: float) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class EphemeralStore(Protocol):
    """Opaque values under caller-chosen keys, each kept for its own time to live.

    * Keys are lookup hashes chosen by the caller (`sha256(cookie value)`), never raw cookie
      values: whoever reads the store cannot replay a session from it.
    * A record is returned only while it is alive: from `put` until `ttl` seconds later.
      An expired record is never returned, by any method.
    * Failures of the backing server raise `tokensvc.errors.StoreUnavailable`, nothing else.
    """

    async def put(self, key: bytes, value: bytes, ttl: int) -> None:
        """Store `value` under `key` for `ttl` seconds (an integer ≥ 1), replacing any record
        the key had, and its lifetime. Returns only once the record is stored."""

    async def get(self, key: bytes) -> bytes | None:
        """The live record under `key`, left in place; `None` if there is none."""

    async def take(self, key: bytes) -> bytes | None:
        """Atomically read and delete: of any number of concurrent calls for one live record
        exactly one gets its value, the others (and every later call) `None`. One round trip;
        never a read followed by a delete. For single-use records such as an interaction
        that is being completed."""

    async def delete(self, key: bytes) -> None:
        """Remove the record under `key`, if any (idempotent)."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    async def close(self) -> None: ...


class ConsentStore(Protocol):
    """Scopes granted per `(sub, client_id)` pair; pairs are independent of each other.

    * Grants only ever add: `grant` stores the union of what was granted before and the new
      scopes, atomically, so concurrent grants for one pair never lose a scope. Only the
      person takes consent back, all of it at once (`withdraw`, from `/account`).
    * Consents are given to registered clients. Removing a client forgets every consent
      given to it (Postgres: ON DELETE CASCADE, and a `grant` racing the removal stores
      nothing; memory: `MemoryConsents.forget_client`, wired to the client store's removal).
    * Scopes are scope tokens (RFC 6749 §3.3): non-empty, without spaces. A bare `str` is
      refused with `TypeError` (it is an iterable of characters, never what was meant).
    * Failures of the backing server raise `tokensvc.errors.StoreUnavailable`, nothing else.
    """

    async def granted(self, sub: str, client_id: str) -> frozenset[str]:
        """The scopes `sub` has granted `client_id`; empty if none."""

    async def grant(self, sub: str, client_id: str, scopes: Iterable[str]) -> None:
        """Add `scopes` to what `sub` has granted `client_id` (a union; no scope is ever
        taken away). Returns once stored. Granting no scopes writes nothing."""

    async def of_person(self, sub: str) -> dict[str, frozenset[str]]:
        """Every client `sub` has consented to, with what it was granted (for `/account`)."""

    async def withdraw(self, sub: str, client_id: str) -> None:
        """Forget what `sub` granted `client_id`: the next sign-in asks again. Idempotent."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    async def close(self) -> None: ...
