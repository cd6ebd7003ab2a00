"""The services the fuzz attacks: the token service (and the login front-end) on loopback
sockets, kept up for a whole module over memory or Redis + Postgres, and driven from
hypothesis' synchronous examples through one long-lived event loop.

Hypothesis runs each example as a plain function call, so a module owns an `asyncio.Runner`
and every example runs its requests with `Stack.run` (bounded by a timeout). The servers and
the client session live on that loop from the module's first request to its last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from tests.harness import INTERNAL_TOKEN, Clock, Harness, make_service, pkce_pair
from tests.login_harness import Login
from tests.servers import create_database, run_sync
from tokensvc.config import Settings
from tokensvc.http.apps import internal_app, public_app
from tokensvc.http.server import app_runner
from tokensvc.limits.failures import MemoryFailureLimiter, RedisFailureLimiter
from tokensvc.login.app import login_app
from tokensvc.login.context import LoginContext
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.models import Client
from tokensvc.registration import new_user
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.storage.consents import MemoryConsents, PostgresConsents
from tokensvc.storage.ephemeral import MemoryEphemeral, RedisEphemeral
from tokensvc.storage.migrate import migrate
from tokensvc.storage.postgres import Postgres
from tokensvc.wiring.stores import Stores, memory_stores, open_stores

T = TypeVar("T")
FUZZ_REDIS_DB = 12  # not 0 (shared): a number no other test module uses
STEP_TIMEOUT = 30.0  # seconds any one step (an example's requests, a set-up) may take
PASSWORD = "fuzz-horse-battery"
# A registered redirect URI with a query of its own: responses must keep it (RFC 6749 §3.1.2).
REDIRECTS = ("https://app.example.com/cb", "https://app.example.com/cb2?tenant=a%20b")


@dataclass
class Party:
    """A registered client as the fuzz knows it."""

    client: Client
    secret: str | None

    @property
    def client_id(self) -> str:
        return self.client.client_id


@dataclass
class World:
    """What the strategies may draw from: real clients, credentials and tokens (each also a
    base for near misses), besides garbage. Codes and tokens here may be burnt by the fuzz."""

    parties: dict[str, Party]
    issuer: str
    pkce: list[tuple[str, str]]  # (verifier, challenge)
    codes: list[tuple[str, str, str | None]] = field(default_factory=list)  # role, code, verifier
    refresh_tokens: list[tuple[str, str]] = field(default_factory=list)  # role, token
    access_tokens: list[tuple[str, str]] = field(default_factory=list)  # role, token
    username: str = "ada"
    decoys: list[str] = field(default_factory=list)  # only their near misses are presented

    def credentials(self) -> list[str]:
        """Every real value, for near misses."""
        values = [p.secret for p in self.parties.values() if p.secret]
        values += [c for _, c, _ in self.codes] + [t for _, t in self.refresh_tokens]
        values += [t for _, t in self.access_tokens] + [v for v, _ in self.pkce]
        return values


@dataclass
class Sentinel:
    """Credentials the fuzz never presents (only near misses of them): bad input must leave
    them exactly as they were."""

    party: Party
    code: str
    verifier: str | None
    refresh_token: str
    access_token: str

    @classmethod
    async def plant(cls, h: Harness, world: World) -> Sentinel:
        party = await register(h, "basic", name="fuzz sentinel")
        spare, spare_verifier = await h.mint_code(party.client)
        code, verifier = await h.mint_code(party.client)
        body = (await h.exchange(party.client, party.secret, spare, spare_verifier)).body
        sentinel = cls(party, code, verifier, body["refresh_token"], body["access_token"])
        world.decoys[:] = [code, sentinel.refresh_token, sentinel.access_token]
        return sentinel

    async def assert_intact(self, h: Harness) -> None:
        """The code is exchanged exactly once, the refresh token rotates, the access token is
        active: nothing the fuzz sent consumed, revoked or locked any of them."""
        client, secret = self.party.client, self.party.secret
        first = await h.exchange(client, secret, self.code, self.verifier)
        assert first.status == 200, first
        again = await h.exchange(client, secret, self.code, self.verifier)
        assert again.status == 400 and again.body["error"] == "invalid_grant", again
        rotated = await h.token(
            client, secret, grant_type="refresh_token", refresh_token=self.refresh_token
        )
        assert rotated.status == 200, rotated
        seen = await h.post_token_like("/introspect", client, secret, token=self.access_token)
        assert seen.status == 200 and seen.body["active"] is True, seen


@dataclass
class Stack:
    """One module's services and loop. `run` executes a coroutine on the module's loop."""

    runner: asyncio.Runner
    harness: Harness
    world: World
    login: Login | None = None
    backend: str = "memory"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT) -> T:
        return self.runner.run(asyncio.wait_for(coro, timeout))

    def plant(self) -> Sentinel:
        return self.run(Sentinel.plant(self.harness, self.world))

    def check(self, sentinel: Sentinel) -> None:
        self.run(sentinel.assert_intact(self.harness))


# ---------------------------------------------------------------------------- backends


@dataclass
class Backend:
    name: str
    stores: Stores
    pg: Postgres | None = None
    redis: aioredis.Redis | None = None


def real_urls(redis_url: str, postgres_admin_url: str, name: str) -> tuple[str, str]:
    """A flushed Redis database of the fuzz's own and a fresh, migrated Postgres database."""
    redis_db = urlunsplit(urlsplit(redis_url)._replace(path=f"/{FUZZ_REDIS_DB}"))
    database = create_database(postgres_admin_url, name)
    run_sync(lambda: migrate(database))
    return redis_db, database


@asynccontextmanager
async def open_backend(name: str, urls: tuple[str, str] | None) -> AsyncIterator[Backend]:
    """Memory stores, or the production wiring (`open_stores`) over Redis + Postgres: the
    cache, the Redis lockouts and deny-list included, so store-level parsing is fuzzed too."""
    if urls is None:
        yield Backend(name, memory_stores())
        return
    redis_url, database_url = urls
    settings = Settings(
        issuer="http://127.0.0.1:8080",
        redis_url=redis_url,
        database_url=database_url,
        client_cache_ttl=0,
    )
    async with AsyncExitStack() as stack:
        redis = aioredis.Redis.from_url(redis_url, socket_timeout=2.0)
        stack.push_async_callback(redis.aclose)
        await redis.flushdb()
        stores = await stack.enter_async_context(open_stores(settings))
        pg = await Postgres.connect(database_url, max_size=4)  # the login front-end's
        stack.push_async_callback(pg.close)
        yield Backend(name, stores, pg, redis)


# ---------------------------------------------------------------------------- the world


ROLES: dict[str, dict[str, Any]] = {
    # confidential, Basic, the full set of grants
    "basic": {
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "redirect_uris": list(REDIRECTS),
    },
    # confidential, secret in the body
    "post": {
        "grant_types": ["authorization_code", "refresh_token"],
        "auth_method": "client_secret_post",
        "redirect_uris": [REDIRECTS[0]],
    },
    # public: PKCE required, no secret
    "public": {
        "grant_types": ["authorization_code", "refresh_token"],
        "public": True,
        "redirect_uris": [REDIRECTS[0]],
    },
    # machine to machine only
    "machine": {"grant_types": ["client_credentials"], "scope_list": ["api:read api:write"]},
    # the password grant (argon2: the strategies reach it rarely)
    "password": {"grant_types": ["password", "refresh_token"]},
    # consent screen at /authorize
    "consent": {
        "grant_types": ["authorization_code"],
        "require_consent": True,
        "redirect_uris": [REDIRECTS[0]],
    },
}


async def register(h: Harness, role: str, **extra: Any) -> Party:
    client, secret = await h.client(**{"name": f"fuzz {role}", **ROLES[role], **extra})
    return Party(client, secret)


async def build_world(h: Harness, *, codes_per_client: int = 6) -> World:
    parties = {role: await register(h, role) for role in ROLES}
    user = new_user(username="ada", password=PASSWORD, email="ada@example.com", name="Ada")
    assert await h.stores.users.add(user)
    h.remember(PASSWORD)
    world = World(parties, h.settings.issuer, [pkce_pair() for _ in range(3)])
    h.remember(*(v for v, _ in world.pkce))
    for role in ("basic", "post", "public"):
        party = parties[role]
        for _ in range(codes_per_client):
            code, verifier = await h.mint_code(party.client)
            world.codes.append((role, code, verifier))
        code, verifier = await h.mint_code(party.client)
        body = (await h.exchange(party.client, party.secret, code, verifier)).body
        world.refresh_tokens.append((role, body["refresh_token"]))
        world.access_tokens.append((role, body["access_token"]))
    machine = parties["machine"]
    body = (await h.token(machine.client, machine.secret, grant_type="client_credentials")).body
    world.access_tokens.append(("machine", body["access_token"]))
    return world


# ---------------------------------------------------------------------------- the stack


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free loopback port with the production runner (its limits and its
    protocol log); returns the runner and the base URL."""
    runner = app_runner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _open_login(h: Harness, backend: Backend, http: aiohttp.ClientSession) -> Login:
    if backend.pg is not None and backend.redis is not None:
        consents: Any = PostgresConsents(backend.pg)
        ephemeral: Any = RedisEphemeral(backend.redis, "login")
        limiter: Any = RedisFailureLimiter(backend.redis)
    else:
        consents, ephemeral, limiter = MemoryConsents(), MemoryEphemeral(), MemoryFailureLimiter()
    ctx = LoginContext(
        settings=h.settings.with_(dev=True),
        users=h.stores.users,
        consents=consents,
        ephemeral=ephemeral,
        limiter=limiter,
        api=TokenAPI(h.internal_url, INTERNAL_TOKEN, http),
    )
    runner, url = await serve_app(login_app(ctx))
    return Login(ctx, url, runner, h)


@asynccontextmanager
async def _serve(
    backend: Backend, with_login: bool, settings: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Harness, Login | None]]:
    keys = keyset_from_jwks(generate_jwks("ES256"))
    svc = make_service(
        backend.stores, keys, Clock(time.time()), **{"code_ttl": 600, **(settings or {})}
    )
    async with AsyncExitStack() as stack:
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20))
        stack.push_async_callback(http.close)
        urls = []
        for app in (public_app(svc), internal_app(svc)):
            runner, url = await serve_app(app)
            stack.push_async_callback(runner.cleanup)
            urls.append(url)
        public_url, internal_url = urls
        harness = Harness(svc, public_url, internal_url, http)
        harness.remember(INTERNAL_TOKEN)
        login = None
        if with_login:
            login = await _open_login(harness, backend, http)
            stack.push_async_callback(login.close)
        yield harness, login


@contextmanager
def running_stack(
    backend: str,
    urls: tuple[str, str] | None,
    *,
    with_login: bool = False,
    log_sink: Any = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    """Start a backend, the services and the world on a loop of their own; on the way out
    stop everything and check the services' log: no credential the fuzz knew, no traceback
    and no 5xx, whatever the module sent. `settings` override the token service's."""
    mark = log_sink.mark() if log_sink is not None else 0
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        exits = AsyncExitStack()

        async def up() -> tuple[Harness, Login | None, World]:
            store = await exits.enter_async_context(open_backend(backend, urls))
            harness, login = await exits.enter_async_context(_serve(store, with_login, settings))
            return harness, login, await build_world(harness)

        try:
            harness, login, world = runner.run(asyncio.wait_for(up(), 4 * STEP_TIMEOUT))
            yield Stack(runner, harness, world, login, backend)
        finally:
            runner.run(asyncio.wait_for(exits.aclose(), STEP_TIMEOUT))
        if log_sink is not None:
            log_sink.assert_clean(mark, harness.secrets)
            assert_no_server_errors(log_sink.events(mark))


def assert_no_server_errors(events: list[dict[str, Any]]) -> None:
    """Hostile input is the client's fault: no event carries a traceback (`exception`), and
    no request line a 5xx status or `server_error`."""
    for event in events:
        assert "exception" not in event, event
        status = event.get("status")
        assert not (isinstance(status, int) and status >= 500), event
        assert event.get("error") != "server_error", event
