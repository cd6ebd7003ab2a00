"""The login front-end's client of the token service's internal API.

Client records are cached briefly (`CLIENT_CACHE_TTL`) so that every `/authorize` does not cost
a round trip; unknown ids are cached for less time. The token service's change stream
(`GET /internal/changes`, followed by `tokensvc.login.changes`) makes the cache forget a
changed client within a second; the TTL is the fallback while the stream is down. Any
transport failure, timeout or 5xx is `TokenServiceUnavailable`, which the views turn into a
friendly 503 page.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from tokensvc.authzrequest import AuthorizationRequest, ClientDescription

if TYPE_CHECKING:
    from tokensvc.tracing.otel import Tracing

CLIENT_CACHE_TTL = 10.0
NEGATIVE_TTL = 2.0
CACHE_SIZE = 1_000
TIMEOUT = aiohttp.ClientTimeout(total=3.0, connect=1.0)
# The change stream: open for as long as it lasts, given up when silent for three of the token
# service's 5 s pings.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=1.0, sock_connect=1.0, sock_read=15.0)
# Reads that start before a change or less than this long after it are not cached: a read
# under way may have been answered before the change, and the replica answering the next one
# may learn of it a moment after the replica whose stream announced it.
SETTLE = 0.5
CLIENT_ROUTE = "/internal/clients/{client_id}"


class TokenServiceUnavailable(Exception):
    """The internal API did not answer usefully (down, timing out, 5xx, bad bearer)."""


class CodeRefused(Exception):
    """The token service refused to mint a code (400); `error` is its RFC 6749 code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientInfo(ClientDescription):
    """The internal API's client view: what validation needs, and what the pages show."""

    client_id: str
    name: str
    require_consent: bool = False
    # OIDC RP-Initiated Logout 1.0 §3.1: the only places `/logout` may send a person.
    post_logout_redirect_uris: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientInfo:
        return cls(
            client_id=data["client_id"],
            name=data["name"],
            redirect_uris=tuple(data["redirect_uris"]),
            public=bool(data["public"]),
            scopes=frozenset(data["scopes"]),
            grant_types=frozenset(data["grant_types"]),
            require_consent=bool(data.get("require_consent", False)),
            resources=tuple(data.get("resources") or ()),
            resource_names=dict(data.get("resource_names") or {}),
            require_par=bool(data.get("require_pushed_authorization_requests", False)),
            post_logout_redirect_uris=tuple(data.get("post_logout_redirect_uris") or ()),
        )


class TokenAPI:
    def __init__(
        self,
        base_url: str,
        bearer: str,
        http: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._tracing = tracing
        self._headers = {"Authorization": f"Bearer {bearer}"}
        self._http = http
        self._clock = clock
        self._cache: dict[str, tuple[float, ClientInfo | None]] = {}
        self._settle_until = float("-inf")  # reads that start before are not cached

    async def _call(
        self, method: str, path: str, json: Any = None, *, route: str | None = None
    ) -> tuple[int, Any]:
        """`route`: the path's template, naming the call's span (`path` by default)."""
        if self._tracing is None:
            return await self._send(method, path, json, self._headers)
        with self._tracing.outgoing(method, route or path) as call:  # sends its traceparent
            status, body = await self._send(method, path, json, self._headers | call.headers)
            call.answered(status)
            return status, body

    async def _send(
        self, method: str, path: str, json: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        try:
            async with self._http.request(
                method, self._base + path, json=json, headers=headers, timeout=TIMEOUT
            ) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenServiceUnavailable(type(exc).__name__) from exc
        if status >= 500 or status == 401:
            raise TokenServiceUnavailable(f"internal API answered {status}")
        return status, body

    async def client(self, client_id: str, *, fresh: bool = False) -> ClientInfo | None:
        """The client as the token service has it; from a short cache unless `fresh` (for a
        decision that must see a removal at once)."""
        now = self._clock()
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        path = "/internal/clients/" + quote(client_id, safe="")
        status, body = await self._call("GET", path, route=CLIENT_ROUTE)
        info = ClientInfo.from_json(body) if status == 200 else None
        if now < self._settle_until:
            return info  # it may predate a change: answered, not kept
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[client_id] = (now + (CLIENT_CACHE_TTL if info else NEGATIVE_TTL), info)
        return info

    def forget(self, client_id: str) -> None:
        """The client changed: the next `client` asks the token service."""
        self._cache.pop(client_id, None)
        self._changed()

    def forget_naming(self, resource: str) -> None:
        """The resource changed: forget the clients that name it (their consent screens show
        its name)."""
        for client_id, (_, info) in list(self._cache.items()):
            if info is not None and resource in info.resources:
                del self._cache[client_id]
        self._changed()

    def forget_all(self) -> None:
        """Changes may have been missed (the stream (re)connected, or said reset)."""
        self._cache.clear()
        self._changed()

    def _changed(self) -> None:
        self._settle_until = self._clock() + SETTLE

    @asynccontextmanager
    async def open_changes(self) -> AsyncIterator[aiohttp.ClientResponse]:
        """`GET /internal/changes`, the token service's change stream: a response whose body
        is NDJSON lines (`tokensvc.storage.changes.parse`), read for as long as it lasts."""
        url = self._base + "/internal/changes"
        async with self._http.get(url, headers=self._headers, timeout=STREAM_TIMEOUT) as resp:
            yield resp

    async def mint_code(self, payload: dict[str, Any]) -> str:
        status, body = await self._call("POST", "/internal/codes", payload)
        if status == 201 and isinstance(body, dict) and isinstance(body.get("code"), str):
            return str(body["code"])
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise CodeRefused(body["error"], str(body.get("error_description", "")))
        raise TokenServiceUnavailable(f"internal API answered {status}")

    async def pushed(self, client_id: str, request_uri: str) -> AuthorizationRequest | None:
        """The request `client_id` pushed under `request_uri` (RFC 9126 §4), taken: None when
        it is unknown, expired, used or another client's."""
        body = {"client_id": client_id, "request_uri": request_uri}
        status, reply = await self._call("POST", "/internal/pushed", body)
        if status == 200 and isinstance(reply, dict):
            return AuthorizationRequest.from_dict(reply)
        if status == 400:
            return None
        raise TokenServiceUnavailable(f"internal API answered {status}")

    async def published_keys(self) -> dict[str, Any]:
        """The token service's published JWK Set (`GET /internal/jwks`, as `/jwks.json`)."""
        status, body = await self._call("GET", "/internal/jwks")
        if status == 200 and isinstance(body, dict):
            return body
        raise TokenServiceUnavailable(f"internal API answered {status}")

    async def end_session(self, sub: str, sid: str) -> None:
        """The person signed out of browser session `sid`: the token service revokes its
        online grants and owes each of its clients a back-channel logout."""
        await self._expect_ok("/internal/sessions/end", {"sub": sub, "sid": sid})

    async def person_grants(self, sub: str) -> list[dict[str, Any]]:
        """The person's live grants: `client_id`, `scope`, `resources`, `created_at`."""
        body = await self._expect_ok("/internal/access/list", {"sub": sub})
        grants = body.get("grants")
        if not isinstance(grants, list):
            raise TokenServiceUnavailable("internal API answered without grants")
        return grants

    async def revoke_access(self, sub: str, client_id: str) -> None:
        """Revoke every grant the person gave `client_id` (with its tokens)."""
        await self._expect_ok("/internal/access/revoke", {"sub": sub, "client_id": client_id})

    async def _expect_ok(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, body = await self._call("POST", path, payload)
        if status != 200 or not isinstance(body, dict):
            raise TokenServiceUnavailable(f"internal API answered {status}")
        return body

    async def ping(self) -> bool:
        """Reachable and accepting our bearer (an unknown client id answers 404)."""
        try:
            status, _ = await self._call("GET", "/internal/clients/-", route=CLIENT_ROUTE)
        except TokenServiceUnavailable:
            return False
        return status in (200, 404)
