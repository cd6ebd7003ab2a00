"""What the soak reads at the end of every window, besides the load's own counts:

* the service's process tree (root and workers) from /proc: resident memory (VmRSS), threads
  and open file descriptors — a leak shows as a slope in one of them;
* Redis: `INFO memory` (used_memory, used_memory_rss) and DBSIZE of the service's database;
* Postgres: rows and on-disk size (with indexes and TOAST) of `refresh_tokens` and `grants`,
  which grow by design (retired refresh tokens are kept for reuse detection), and the
  database's size.

A probe that cannot read something gives None for it and says why once; the soak goes on.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from benchmarks import cpu

TABLES = ("refresh_tokens", "grants")
SIZES = """
SELECT (SELECT count(*) FROM refresh_tokens), pg_total_relation_size('refresh_tokens'),
       (SELECT count(*) FROM grants), pg_total_relation_size('grants'),
       pg_database_size(current_database())
"""  # in TABLES' order
MIB = 1024 * 1024


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                out[name] = int(value.split()[0])  # VmRSS in kB
    return out


def process_tree(root: int) -> dict[str, Any] | None:
    """RSS (MiB, summed: shared pages of forked workers count once per process), threads,
    open fds and the number of processes of `root`'s tree; None when it is gone."""
    pids = cpu.tree(root)
    if not pids:
        return None
    rss_kib = threads = fds = 0
    for pid in pids:
        status = _status(pid)
        rss_kib += status.get("VmRSS", 0)
        threads += status.get("Threads", 0)
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return {
        "rss_mib": round(rss_kib / 1024, 3),
        "threads": threads,
        "fds": fds,
        "processes": len(pids),
    }


class Stores:
    """Redis and Postgres readings over connections kept for the whole soak (async: call
    from one event loop)."""

    def __init__(self, redis_url: str | None, database_url: str | None) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        self.problems: dict[str, str] = {}  # store -> the first failure
        self._redis: Any = None
        self._pg: Any = None

    async def read(self) -> dict[str, Any]:
        return {"redis": await self._read_redis(), "postgres": await self._read_postgres()}

    async def _read_redis(self) -> dict[str, Any] | None:
        if not self.redis_url:
            return None
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        try:
            if self._redis is None:
                self._redis = aioredis.from_url(self.redis_url, socket_timeout=5)
            info = await self._redis.info("memory")
            keys = await self._redis.dbsize()
        except (RedisError, OSError) as exc:
            self.problems.setdefault("redis", " ".join(str(exc).split())[:300])
            return None
        return {
            "used_memory_mib": round(info["used_memory"] / MIB, 3),
            "rss_mib": round(info["used_memory_rss"] / MIB, 3),
            "keys": int(keys),
        }

    async def _read_postgres(self) -> dict[str, Any] | None:
        if not self.database_url:
            return None
        import asyncpg

        try:
            if self._pg is None:
                self._pg = await asyncpg.connect(self.database_url, timeout=10)
            row = await self._pg.fetchrow(SIZES, timeout=30)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            self.problems.setdefault("postgres", " ".join(str(exc).split())[:300])
            if self._pg is not None:
                with contextlib.suppress(Exception):
                    await self._pg.close()
                self._pg = None
            return None
        out: dict[str, Any] = {}
        for i, table in enumerate(TABLES):
            out[table] = {"rows": int(row[2 * i]), "mib": round(row[2 * i + 1] / MIB, 3)}
        out["database_mib"] = round(row[-1] / MIB, 3)
        return out

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
