"""Short-lived records of the login front-end: browser sessions and pending sign-in
"interactions" (an `/authorize` request waiting for its login and consent).

Memory for `tokensvc dev`, Redis in production (`TOKENSVC_REDIS_URL`) under one prefix
(`RedisEphemeral(client, "login")`): sessions and pending sign-ins share it, their keys being
hashes of independent random values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tokensvc.errors import StoreUnavailable
from tokensvc.expiring import ExpiringDict
from tokensvc.inprocess import InProcess
from tokensvc.redis_client import DRIVER_ERRORS, RedisClient, RedisStore, connect

STORE = "redis"
KEY_PREFIX = "tokensvc:"
# Keyspaces other tokensvc stores own in the same Redis (`tokensvc:code:…` holds the
# authorization codes, `tokensvc:fail:…` the failed-login counters): never reuse them.
RESERVED_PREFIXES = frozenset({"code", "fail"})
_PREFIX = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _check_ttl(ttl: int) -> None:
    # Both backends refuse the same way: Redis would answer `EX 0` with an error, which is a
    # caller bug, not an outage.
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError(f"ttl must be an integer number of seconds >= 1, got {ttl!r}")


# --------------------------------------------------------------------------- memory


class MemoryEphemeral(InProcess):
    """In-process records (one process only, lost on exit). Atomic because no method awaits.

    Expired records are dropped when looked up and, so that keys nobody asks for again
    cannot pile up, by a sweep of the whole dict during `put` once `sweep_interval` seconds
    have passed since the last sweep or the dict has doubled since then (amortised O(1)).
    At most the records of the last `sweep_interval` seconds plus the live ones are kept.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, *, sweep_interval: float = 60.0
    ) -> None:
        self._clock = clock
        # key -> (expires_at, value)
        self._records: ExpiringDict[bytes, tuple[float, bytes]] = ExpiringDict(
            lambda record: record[0], clock(), sweep_interval
        )

    async def put(self, key: bytes, value: bytes, ttl: int) -> None:
        _check_ttl(ttl)
        now = self._clock()
        self._records.entries[key] = (now + ttl, bytes(value))
        self._records.swept(now)

    async def get(self, key: bytes) -> bytes | None:
        return self._live(key, self._clock(), remove=False)

    async def take(self, key: bytes) -> bytes | None:
        return self._live(key, self._clock(), remove=True)

    async def delete(self, key: bytes) -> None:
        self._records.entries.pop(key, None)

    def _live(self, key: bytes, now: float, *, remove: bool) -> bytes | None:
        record = self._records.entries.get(key)
        if record is None:
            return None
        expires_at, value = record
        if expires_at <= now or remove:
            del self._records.entries[key]
        return value if expires_at > now else None

    def __len__(self) -> int:
        return len(self._records)


# --------------------------------------------------------------------------- redis


class RedisEphemeral(RedisStore):
    """Records as Redis strings under `tokensvc:{prefix}:{key.hex()}` with a native TTL
    (`SET … EX`), so Redis expires them itself; `take` is one `GETDEL` (Redis ≥ 6.2).

    Closing closes the client: stores sharing one client should be closed once, by whoever
    made the client."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        if not _PREFIX.fullmatch(prefix) or prefix in RESERVED_PREFIXES:
            raise ValueError(
                f"prefix must match {_PREFIX.pattern} and not be one of "
                f"{sorted(RESERVED_PREFIXES)}, got {prefix!r}"
            )
        super().__init__(client)
        self._prefix = f"{KEY_PREFIX}{prefix}:"

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisEphemeral:
        return cls(connect(url), prefix)

    def key_name(self, key: bytes) -> str:
        """The Redis key a record is stored under."""
        return self._prefix + key.hex()

    async def put(self, key: bytes, value: bytes, ttl: int) -> None:
        _check_ttl(ttl)
        try:
            await self._redis.set(self.key_name(key), value, ex=ttl)
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc

    async def get(self, key: bytes) -> bytes | None:
        try:
            value = await self._redis.get(self.key_name(key))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc
        return _raw(value)

    async def take(self, key: bytes) -> bytes | None:
        try:
            value = await self._redis.getdel(self.key_name(key))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc
        return _raw(value)

    async def delete(self, key: bytes) -> None:
        try:
            await self._redis.delete(self.key_name(key))
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(STORE, exc) from exc


def _raw(value: bytes | str | None) -> bytes | None:
    """A value as stored: the clients tokensvc opens never decode responses."""
    assert not isinstance(value, str), "a Redis client with decode_responses"
    return value
