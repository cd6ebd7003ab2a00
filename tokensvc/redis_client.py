"""The one way tokensvc opens Redis: one server, a Redis Cluster, or a master found through
Sentinel, all with short timeouts so a dead server is a quick 503.

`TOKENSVC_REDIS_URL` picks the topology by scheme:

* `redis://`, `rediss://`, `unix://` — one server (redis-py's URL syntax);
* `redis+cluster://[user:password@]host:port[,host:port...][?options]` (`rediss+cluster://`
  for TLS) — a Redis Cluster, discovered from any of the listed nodes;
* `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?options]`
  (`rediss+sentinel://`) — the master Sentinel names for `service`, followed across failovers.
  The credentials are the master's; `?sentinel_password=` authenticates to the Sentinels.

Every store keeps the keys of one script call in one hash slot, or calls once per slot
(`calls_by_slot`), so each works unchanged on a cluster. Shared by every Redis-backed store
(codes, limits, the login front-end's sessions and counters); it imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeGuard, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tokensvc.errors import StoreUnavailable

# What a Redis call may raise when the server is down, slow or refusing: each store turns
# these into `StoreUnavailable("redis", ...)`. (`redis.exceptions.TimeoutError` and
# `ConnectionError` are `RedisError`s; a few socket paths raise bare `OSError`s.)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

# A dead Redis must turn into a quick 503, not a hang.
TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


def _retry() -> Retry:
    """One immediate retry, on a fresh connection, of a command whose connection turned out
    dead: after a Redis restart every idle pooled connection is, and each would otherwise fail
    one request with a 503 long after Redis is back (tests/faults). Re-running a script is
    safe: a code consumed by the first attempt reads as used (`invalid_grant`), never as a
    second success. One retry only, so a Redis that is really down is still a quick 503; not on
    a timeout, which is a Redis too slow to hurry."""
    return Retry(NoBackoff(), 1, (RedisConnectionError,))


T = TypeVar("T")
# What `connect` returns: one API either way (a cluster routes each command by its key).
RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"


def connect(url: str, *, max_connections: int | None = None) -> RedisClient:
    """A client for the topology `url` names (see the module docstring). The result has the
    `redis.asyncio.Redis` command API either way; `RedisCluster` routes each call by key."""
    scheme = urlsplit(url).scheme
    pool: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
    if scheme.endswith("+cluster"):
        return _cluster(url, pool)
    if scheme.endswith("+sentinel"):
        return _sentinel_master(url, pool)
    return aioredis.Redis.from_url(
        url, health_check_interval=30, retry=_retry(), **TIMEOUTS, **pool
    )


def _hosts(netloc: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """`user:password@h1:p1,h2:p2` -> (user, password, [(h1, p1), (h2, p2)])."""
    userinfo, _, hostlist = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = []
    for item in hostlist.split(","):
        host, port = item, ""
        if item.rfind(":") > item.rfind("]"):  # a port, not the inside of an [IPv6] address
            host, _, port = item.rpartition(":")
        hosts.append((host.strip("[]") or "localhost", int(port or 6379)))
    return unquote(user) or None, unquote(password) or None, hosts


def _options(query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query).items()}


def _cluster(url: str, pool: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(url)
    user, password, hosts = _hosts(parts.netloc)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in hosts],
        username=user,
        password=password,
        ssl=parts.scheme.startswith("rediss"),
        retry=_retry(),  # the cluster's own: rediscovers the slots, then tries once more
        **TIMEOUTS,
        **pool,
    )


def _sentinel_master(url: str, pool: dict[str, Any]) -> aioredis.Redis:
    parts = urlsplit(url)
    user, password, hosts = _hosts(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a redis+sentinel URL names the service: redis+sentinel://h:p/service")
    options = _options(parts.query)
    sentinel_auth = (
        {"password": options["sentinel_password"]} if "sentinel_password" in options else {}
    )
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        hosts, sentinel_kwargs={**TIMEOUTS, **sentinel_auth}, **TIMEOUTS
    )
    master: _SentinelMaster = sentinel.master_for(
        path[0],
        redis_class=_SentinelMaster,
        db=int(path[1]) if len(path) > 1 else 0,
        username=user,
        password=password,
        ssl=parts.scheme.startswith("rediss"),
        retry=_retry(),  # a connection to a master that failed over: ask the sentinels again
        **pool,
    )
    master.sentinels = sentinel.sentinels
    return master


class _SentinelMaster(aioredis.Redis):
    """The master's client, which also closes its connections to the sentinels."""

    sentinels: list[aioredis.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.sentinels:
            await sentinel.aclose()


def is_cluster(client: RedisClient) -> TypeGuard[RedisCluster]:
    return isinstance(client, RedisCluster)


async def calls_by_slot(
    client: RedisClient, keys: Sequence[str], call: Callable[[list[int]], Awaitable[T]]
) -> list[tuple[list[int], T]]:
    """Run `call` with the indexes of `keys` that share a hash slot, once per slot and
    concurrently, on a cluster (a script may only touch one slot's keys there); once with all
    indexes on one server. Returns each call's indexes with its result."""
    if not is_cluster(client):
        everything = list(range(len(keys)))
        return [(everything, await call(everything))]
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(index)
    batches = list(groups.values())
    results = await asyncio.gather(*(call(batch) for batch in batches))
    return list(zip(batches, results, strict=True))


class RedisStore:
    """A store over a Redis client (shared with sibling stores or its own): its readiness
    ping and its close, with driver failures as `StoreUnavailable("redis", ...)`."""

    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable("redis", exc) from exc

    async def close(self) -> None:
        await self._redis.aclose()
