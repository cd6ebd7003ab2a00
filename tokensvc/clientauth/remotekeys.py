"""Public keys fetched from a `jwks_uri` (a client's, RFC 7591 §2; a federation issuer's, such
as a Kubernetes service-account issuer or a SPIRE OIDC discovery provider).

* Cached per URL for the response's `Cache-Control: max-age`, held within 1 minute and 1 hour
  (5 minutes when it says nothing), so a key the owner rotated in is seen within the hour and
  a hostile `max-age=0` cannot turn every request into a fetch.
* An unknown `kid` fetches again at once, but at most once a minute per URL (RFC 7517 key
  rotation without hammering the owner).
* Concurrent requests for one URL share one fetch; fetches are bounded (2 s each, at most 8 at
  once, 64 KiB), so a slow or failing `jwks_uri` costs its own clients a quick
  `invalid_client` and never stalls anyone else. Keys fetched earlier keep working while a
  refresh fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from tokensvc.publickeys import BadKeys, PublicKey, public_keys

MIN_TTL, DEFAULT_TTL, MAX_TTL = 60.0, 300.0, 3600.0
REFETCH_INTERVAL = 60.0  # seconds between fetches of one URL for an unknown kid
TIMEOUT = 2.0
MAX_CONCURRENT = 8
MAX_BYTES = 64 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,10})\"?", re.IGNORECASE)


class KeysUnavailable(Exception):
    """The keys at a URL could not be had (unreachable, slow, not a JWK Set); why, in one
    line with no response content."""


@dataclass(slots=True)
class _Entry:
    keys: tuple[PublicKey, ...]
    kids: frozenset[str]
    expires: float
    fetched: float
    forced: float = float("-inf")  # when an unknown kid last made it fetch early


def cache_ttl(cache_control: str | None) -> float:
    """How long a response may be used: its `max-age`, within [MIN_TTL, MAX_TTL]."""
    found = _MAX_AGE.search(cache_control or "")
    if found is None:
        return DEFAULT_TTL
    return min(MAX_TTL, max(MIN_TTL, float(found.group(1))))


class RemoteKeys:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def keys(self, url: str, kid: str | None = None) -> tuple[PublicKey, ...]:
        """The keys at `url`: cached while fresh, fetched when stale or when `kid` is one the
        cached set lacks (at most once a minute). Raises `KeysUnavailable`."""
        entry = self._entries.get(url)
        now = self._clock()
        if entry is not None:
            unknown = kid is not None and kid not in entry.kids
            force = unknown and now - entry.forced >= REFETCH_INTERVAL
            if now < entry.expires and not force:
                return entry.keys
            if force:
                entry.forced = now
            try:
                fresh = await self._refresh(url)
                fresh.forced = entry.forced
                return fresh.keys
            except KeysUnavailable:
                if now < entry.fetched + MAX_TTL:
                    return entry.keys  # keep working while the owner's endpoint is down
                raise
        return (await self._refresh(url)).keys

    async def _refresh(self, url: str) -> _Entry:
        pending = self._inflight.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            entry = await self._fetch(url)
        except KeysUnavailable as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            self._entries[url] = entry
            future.set_result(entry)
            return entry
        finally:
            del self._inflight[url]

    async def _fetch(self, url: str) -> _Entry:
        if self._slots.locked():
            raise KeysUnavailable("too many key fetches under way")
        async with self._slots:
            try:
                async with asyncio.timeout(TIMEOUT):
                    session = self._client()
                    async with session.get(url, allow_redirects=False) as resp:
                        if resp.status != 200:
                            raise KeysUnavailable(f"the key URL answered {resp.status}")
                        body = await resp.content.read(MAX_BYTES + 1)
                        cache_control = resp.headers.get("Cache-Control")
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise KeysUnavailable(f"the key URL failed: {type(exc).__name__}") from None
        if len(body) > MAX_BYTES:
            raise KeysUnavailable("the key URL sent more than 64 KiB")
        try:
            keys = public_keys(orjson.loads(body))
        except (orjson.JSONDecodeError, BadKeys) as exc:
            raise KeysUnavailable(f"the key URL sent no usable JWK Set: {exc}") from None
        now = self._clock()
        kids = frozenset(key.kid for key in keys if key.kid is not None)
        return _Entry(keys, kids, now + cache_ttl(cache_control), now)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                headers={"Accept": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
