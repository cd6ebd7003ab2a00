"""The token service's stores, picked from settings: memory by default, Redis when
`TOKENSVC_REDIS_URL` is set, Postgres when `TOKENSVC_DATABASE_URL` is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from tokensvc.config import Settings
from tokensvc.limits.buckets import MemoryBuckets, RateLimiter
from tokensvc.limits.failures import FailureLimiter, MemoryFailureLimiter
from tokensvc.limits.lockout import Lockouts, MemoryLockouts
from tokensvc.service import Stores
from tokensvc.storage.cache import CachedClients, CachedResources
from tokensvc.storage.changes import CLIENT, RESOURCE, ChangeHub
from tokensvc.storage.denylist import MemoryDenyList
from tokensvc.storage.ephemeral import MemoryEphemeral
from tokensvc.storage.memory import MemoryClients, MemoryGrants, MemoryUsers
from tokensvc.storage.memory_codes import MemoryCodes
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

# The Redis keyspace of pushed authorization requests (`tokensvc:par:…`, RFC 9126).
PUSHED_PREFIX = "par"


def memory_stores() -> Stores:
    clients, grants = MemoryClients(), MemoryGrants()
    clients.on_remove = grants.forget_client
    return Stores(
        codes=MemoryCodes(),
        clients=clients,
        users=MemoryUsers(),
        grants=grants,
        logouts=grants.logouts,
    )


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Open the backends named by `TOKENSVC_REDIS_URL` / `TOKENSVC_DATABASE_URL`, memory else."""
    memory = memory_stores()
    codes: CodeStore = memory.codes
    clients: ClientStore = memory.clients
    users: UserStore = memory.users
    grants: GrantStore = memory.grants
    logouts: LogoutQueue = memory.logouts
    federations: FederationStore = memory.federations
    resources: ResourceStore = memory.resources
    changes = ChangeHub()
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        revoked: DenyList = MemoryDenyList()
        failures: FailureLimiter = MemoryFailureLimiter()
        rates: RateLimiter = MemoryBuckets()
        lockouts: Lockouts = MemoryLockouts()
        replay: ReplayStore = MemoryReplay()
        pushed: EphemeralStore = MemoryEphemeral()
        if settings.redis_url:
            from tokensvc.limits.buckets import RedisBuckets
            from tokensvc.limits.failures import RedisFailureLimiter
            from tokensvc.limits.lockout import RedisLockouts
            from tokensvc.redis_client import connect
            from tokensvc.storage.denylist import RedisDenyList
            from tokensvc.storage.ephemeral import RedisEphemeral
            from tokensvc.storage.redis_codes import RedisCodes
            from tokensvc.storage.replay import RedisReplay

            redis = connect(settings.redis_url)
            codes = RedisCodes(redis)
            revoked, failures = RedisDenyList(redis), RedisFailureLimiter(redis)
            closers.append(redis.aclose)
            shared_lockouts = RedisLockouts(redis)
            await shared_lockouts.start()
            closers.append(shared_lockouts.close)
            rates, lockouts, replay = RedisBuckets(redis), shared_lockouts, RedisReplay(redis)
            pushed = RedisEphemeral(redis, PUSHED_PREFIX)
        if settings.database_url:
            from tokensvc.storage.postgres import Postgres

            # Connections open on demand: the service starts (not ready) while the
            # database is still down, and recovers by itself when it comes up.
            pg = await Postgres.connect(settings.database_url, min_size=0, max_size=20)
            closers.append(pg.close)
            # Read on every /token request (clients) or every one naming a resource: both
            # through the in-process cache, which the change feed keeps current within a
            # second; stale by at most TOKENSVC_CLIENT_CACHE_TTL while the feed is down.
            cached_clients = CachedClients(pg.clients, settings.client_cache_ttl)
            cached_resources = CachedResources(pg.resources, settings.client_cache_ttl)
            changes.watch(CLIENT, cached_clients)
            changes.watch(RESOURCE, cached_resources)
            clients, resources = cached_clients, cached_resources
            from tokensvc.storage.postgres.changes import PostgresChangeFeed

            # Its own connection, opened in the background like the pool's: a database that
            # is down delays nothing here.
            feed = PostgresChangeFeed(settings.database_url, changes)
            feed.start()
            closers.append(feed.close)
            users, grants, federations = pg.users, pg.grants, pg.federations
            logouts = pg.logouts
        yield Stores(
            codes=codes,
            clients=clients,
            users=users,
            grants=grants,
            revoked=revoked,
            failures=failures,
            rates=rates,
            lockouts=lockouts,
            federations=federations,
            resources=resources,
            replay=replay,
            pushed=pushed,
            logouts=logouts,
            changes=changes,
        )
    finally:
        for close in reversed(closers):
            await close()
