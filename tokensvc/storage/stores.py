"""The token service's store bundle; `open_stores` picks backends from settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tokensvc.config import Settings
from tokensvc.errors import StoreUnavailable
from tokensvc.limits.buckets import MemoryBuckets, RateLimiter
from tokensvc.limits.lockout import Lockouts, MemoryLockouts
from tokensvc.login.ratelimit import FailureLimiter, MemoryFailureLimiter
from tokensvc.storage.cache import CachedClients
from tokensvc.storage.denylist import DenyList, MemoryDenyList
from tokensvc.storage.memory import MemoryClients, MemoryGrants, MemoryUsers
from tokensvc.storage.memory_codes import MemoryCodes
from tokensvc.storage.protocols import ClientStore, CodeStore, GrantStore, UserStore


@dataclass(frozen=True, slots=True)
class Stores:
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

    async def readiness(self, limit: float = 2.0) -> dict[str, bool]:
        """Which backends answer a ping within `limit` seconds (for `/readyz`)."""
        named = {"codes": self.codes, "clients": self.clients, "grants": self.grants}

        async def ok(store: CodeStore | ClientStore | GrantStore) -> bool:
            try:
                await asyncio.wait_for(store.ping(), limit)
            except (StoreUnavailable, TimeoutError):
                return False
            return True

        results = await asyncio.gather(*(ok(s) for s in named.values()))
        return dict(zip(named, results, strict=True))


def memory_stores() -> Stores:
    clients, grants = MemoryClients(), MemoryGrants()
    clients.on_remove = grants.forget_client
    return Stores(codes=MemoryCodes(), clients=clients, users=MemoryUsers(), grants=grants)


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Open the backends named by `TOKENSVC_REDIS_URL` / `TOKENSVC_DATABASE_URL`, memory else."""
    memory = memory_stores()
    codes: CodeStore = memory.codes
    clients: ClientStore = memory.clients
    users: UserStore = memory.users
    grants: GrantStore = memory.grants
    closers = []
    try:
        revoked: DenyList = MemoryDenyList()
        failures: FailureLimiter = MemoryFailureLimiter()
        rates: RateLimiter = MemoryBuckets()
        lockouts: Lockouts = MemoryLockouts()
        if settings.redis_url:
            from tokensvc.limits.buckets import RedisBuckets
            from tokensvc.limits.lockout import RedisLockouts
            from tokensvc.login.ratelimit import RedisFailureLimiter
            from tokensvc.storage.denylist import RedisDenyList
            from tokensvc.storage.redis_client import connect
            from tokensvc.storage.redis_codes import RedisCodes

            redis = connect(settings.redis_url)
            codes = RedisCodes(redis)
            revoked, failures = RedisDenyList(redis), RedisFailureLimiter(redis)
            closers.append(redis.aclose)
            shared_lockouts = RedisLockouts(redis)
            await shared_lockouts.start()
            closers.append(shared_lockouts.close)
            rates, lockouts = RedisBuckets(redis), shared_lockouts
        if settings.database_url:
            from tokensvc.storage.postgres import Postgres

            # Connections open on demand: the service starts (not ready) while the
            # database is still down, and recovers by itself when it comes up.
            pg = await Postgres.connect(settings.database_url, min_size=0, max_size=20)
            closers.append(pg.close)
            clients = CachedClients(pg.clients, settings.client_cache_ttl)
            users, grants = pg.users, pg.grants
        yield Stores(
            codes=codes,
            clients=clients,
            users=users,
            grants=grants,
            revoked=revoked,
            failures=failures,
            rates=rates,
            lockouts=lockouts,
        )
    finally:
        for close in reversed(closers):
            await close()
