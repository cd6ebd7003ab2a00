"""The token service's runtime: settings, stores, keys, clock and randomness in one place.

Grants and endpoints receive this object instead of reaching for globals, so a test can run
the real code with a fake clock or a fresh set of stores. The stores arrive assembled
(`tokensvc.wiring.stores`): this module knows their protocols, never their backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tokensvc.config import Settings
from tokensvc.limits.buckets import MemoryBuckets, RateLimiter
from tokensvc.limits.failures import FailureLimiter, MemoryFailureLimiter
from tokensvc.limits.lockout import Lockouts, MemoryLockouts
from tokensvc.machinetokens import MachineTokens
from tokensvc.metrics import Metrics, time_calls
from tokensvc.models import Client
from tokensvc.opaque import Entropy, random_bytes
from tokensvc.readiness import readiness
from tokensvc.signing.keys import KeySet
from tokensvc.signing.tokens import TokenMinter
from tokensvc.signing.verify import VerifiedTokens
from tokensvc.storage.cache import Cached
from tokensvc.storage.changes import ChangeHub
from tokensvc.storage.denylist import MemoryDenyList
from tokensvc.storage.ephemeral import MemoryEphemeral
from tokensvc.storage.memory import MemoryFederations, MemoryLogoutQueue, MemoryResources
from tokensvc.storage.protocols import (
    ClientStore,
    CodeStore,
    DenyList,
    EphemeralStore,
    FederationStore,
    GrantStore,
    LogoutQueue,
    ReplayStore,
    ResourceStore,
    UserStore,
)
from tokensvc.storage.replay import MemoryReplay

if TYPE_CHECKING:
    from tokensvc.tracing.otel import Tracing


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store the token service uses, by protocol."""

    codes: CodeStore
    clients: ClientStore
    users: UserStore
    grants: GrantStore
    # Revoked access tokens, and failed `password` grants (limited like the sign-in form).
    revoked: DenyList = field(default_factory=MemoryDenyList)
    failures: FailureLimiter = field(default_factory=MemoryFailureLimiter)
    # Abuse limits at /token (tokensvc.limits): request rates per client, invalid_client
    # lockouts per client_id.
    rates: RateLimiter = field(default_factory=MemoryBuckets)
    lockouts: Lockouts = field(default_factory=MemoryLockouts)
    # Trusted issuers of workload tokens (federated_jwt clients).
    federations: FederationStore = field(default_factory=MemoryFederations)
    # Resource servers (RFC 8707) that clients may name with `resource` at /token.
    resources: ResourceStore = field(default_factory=MemoryResources)
    # Values accepted once: the `jti`s of client assertions (Redis when configured).
    replay: ReplayStore = field(default_factory=MemoryReplay)
    # Pushed authorization requests (RFC 9126), one use each, for a minute.
    pushed: EphemeralStore = field(default_factory=MemoryEphemeral)
    # Back-channel logouts owed: the queue `grants.end_session` writes in the same step, so
    # give the grants' own (`MemoryGrants.logouts`, `Postgres.logouts`).
    logouts: LogoutQueue = field(default_factory=MemoryLogoutQueue)
    # Not a store: where the database's change feed tells the caches (and the internal API's
    # change stream) what changed (tokensvc.storage.changes). Quiet in memory.
    changes: ChangeHub = field(default_factory=ChangeHub)

    async def readiness(self) -> dict[str, bool]:
        """Which backends answer (for `/readyz`)."""
        return await readiness(
            {"codes": self.codes.ping, "clients": self.clients.ping, "grants": self.grants.ping}
        )


class WorkloadTokens(Protocol):
    """Verifies a federation issuer's token as a token-exchange subject or actor (RFC 8693):
    `tokensvc.clientauth.assertion.AssertionVerifier`, set by the listener that owns it."""

    async def workload(self, token: str) -> tuple[dict[str, Any], Client]: ...


@dataclass(slots=True)
class TokenService:
    settings: Settings
    stores: Stores
    keys: KeySet
    clock: Callable[[], float] = time.time
    entropy: Entropy = random_bytes
    metrics: Metrics = field(default_factory=Metrics)
    minter: TokenMinter = field(init=False)
    workloads: WorkloadTokens | None = None  # None: jwt subject tokens are not accepted
    # Our access tokens whose signature verified (introspection, userinfo, token exchange).
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)
    tracing: Tracing | None = None  # None: OTEL_EXPORTER_OTLP_ENDPOINT unset (tokensvc.tracing)
    # Bearer tokens of `--reuse-access-token` clients, reused while half their life is left.
    machine_tokens: MachineTokens = field(default_factory=MachineTokens)

    def __post_init__(self) -> None:
        observe_stores(self.stores, self.metrics, self.tracing)
        self.minter = TokenMinter(
            self.settings.issuer, self.keys, self.settings.access_token_ttl, self.entropy
        )

    def use_keys(self, keys: KeySet) -> None:
        """Swap in a reloaded key file (SIGHUP, timer): the next token follows its schedule."""
        self.keys = keys
        self.minter.keys = keys


S = TypeVar("S")


def observe_stores(stores: Stores, metrics: Metrics, tracing: Tracing | None = None) -> None:
    """Observe each store call in `tokensvc_store_duration_seconds`, labelled with the store's
    field name, and make it a span when tracing is on; behind an in-process cache (clients,
    resources) only the database is observed, not the hits."""
    for f in fields(stores):
        store = getattr(stores, f.name)
        observe = partial(_observed, name=f.name, metrics=metrics, tracing=tracing)
        if isinstance(store, ChangeHub):
            store.observe(metrics)  # its feed's state and the changes applied
        elif isinstance(store, Cached):
            store.instrument(observe)
        else:
            observe(store)
        for operation, batcher in getattr(store, "batchers", {}).items():
            batcher.on_batch = metrics.store_batches.labels(f.name, operation).inc


def _observed(store: S, name: str, metrics: Metrics, tracing: Tracing | None) -> S:
    if tracing is not None:
        store = tracing.trace_calls(store, name)
    return time_calls(store, name, metrics)
