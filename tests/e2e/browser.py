"""The whole sign-in path on loopback, for a real browser to walk through.

`open_stack` runs, in the test's event loop and on real sockets:

* the token service (public and internal listeners, `tests.harness.start`) with codes in Redis
  and clients, users, grants and refresh tokens in Postgres;
* the login front-end (`login_app`) with users and consents in the same Postgres, sessions,
  interactions and failure counters in Redis (its own database number), and a `TokenAPI`
  that reaches the internal listener with the internal bearer, as in production;
* a tiny "client application" whose redirect URI (`/cb`) records every query it receives,
  with a post-logout page (`/signed-out`), a back-channel logout receiver per client
  (`/backchannel/{client}`) recording each logout token, and `/attack`, a page of another
  origin on the same site serving whatever forged form a test puts in `Stack.attack_page`;
* the token service's back-channel logout deliverer, as every token-service process runs it.

The browser is Debian's Chromium (`/usr/bin/chromium`, installed by `scripts/test`) driven by
Playwright; Playwright's own browser downloads are never used (the network is closed).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Browser, Page, Playwright

from tests.harness import INTERNAL_TOKEN, Clock, Harness, make_service, pkce_pair, start
from tokensvc.config import Settings
from tokensvc.limits.failures import RedisFailureLimiter
from tokensvc.login.app import login_app
from tokensvc.login.context import LoginContext
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.logout.deliverer import LogoutDeliverer
from tokensvc.models import Client, User
from tokensvc.redis_client import connect
from tokensvc.registration import new_user
from tokensvc.signing.keys import KeySet
from tokensvc.storage.consents import PostgresConsents
from tokensvc.storage.ephemeral import RedisEphemeral
from tokensvc.storage.postgres import Postgres
from tokensvc.storage.redis_codes import RedisCodes
from tokensvc.wiring.stores import Stores

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # git-ignored
CODES_REDIS_DB = 10  # not 0 (shared); numbers no other test module uses
LOGIN_REDIS_DB = 11
SCOPE = "openid profile email"
STEP_TIMEOUT_MS = 10_000  # one navigation or one assertion in the browser


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; root needs `--no-sandbox`."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"{CHROMIUM} is missing: the browser tests need the Debian package chromium "
            "(./scripts/test installs it; or, as root: apt-get install chromium)"
        )
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
    )


class WallClock(Clock):
    """The harness's clock type, reading real time: the login front-end stamps `auth_time`
    from the wall clock, and Redis expires codes in real time."""

    def __init__(self) -> None:
        super().__init__(time.time())

    def __call__(self) -> float:
        return time.time()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def left_half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6: `at_hash` is the left half of the hash of the token's ASCII bytes,
    with the hash of the JWS algorithm (SHA-256 for ES256/RS256/PS256, SHA-512 for EdDSA)."""
    name = {"256": "sha256", "384": "sha384", "512": "sha512"}.get(alg[-3:], "sha512")
    digest = hashlib.new(name, value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def _bound_socket() -> socket.socket:
    """A listening-ready loopback socket on a port the OS picked: its URL is known before the
    app that will serve it is built, with no window for another process to take the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _serve(stack: AsyncExitStack, app: web.Application, sock: socket.socket) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock).start()


def _redis_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@dataclass
class Callback:
    """One request the client application's redirect URI received."""

    query: dict[str, str]
    at: float


@dataclass
class LogoutReceived:
    """One back-channel logout POST a client's receiver got."""

    client_id: str
    logout_token: str


@dataclass
class Stack:
    harness: Harness
    login_url: str
    callback_url: str
    callbacks: list[Callback] = field(default_factory=list)
    logouts: list[LogoutReceived] = field(default_factory=list)
    attack_page: list[str] = field(default_factory=lambda: [""])

    @property
    def issuer(self) -> str:
        return self.harness.settings.issuer

    @property
    def app_url(self) -> str:
        return self.callback_url.removesuffix("/cb")

    @property
    def signed_out_url(self) -> str:
        return self.app_url + "/signed-out"

    async def register_client(
        self, name: str, *, require_consent: bool = False
    ) -> tuple[Client, str]:
        """A confidential client (authorization_code + refresh_token) redirecting to `/cb`,
        sent to `/signed-out` after signing out, with its own back-channel logout receiver."""
        client, secret = await self.harness.client(
            name=name,
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[self.callback_url],
            scope_list=[SCOPE + " offline_access"],
            require_consent=require_consent,
            post_logout_redirect_uris=[self.signed_out_url],
            backchannel_logout_uri=f"{self.app_url}/backchannel/{name.replace(' ', '-')}",
        )
        assert secret is not None
        return client, secret

    async def register_user(self, username: str, *, name: str, email: str) -> tuple[User, str]:
        password = secrets.token_urlsafe(12)
        user = new_user(username=username, password=password, email=email, name=name)
        await self.harness.stores.users.add(user)
        self.harness.remember(password)
        return user, password

    def new_request(self, client: Client, scope: str = SCOPE) -> AuthorizeRequest:
        verifier, challenge = pkce_pair()
        self.harness.remember(verifier)
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.callback_url,
            "scope": scope,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return AuthorizeRequest(
            url=f"{self.login_url}/authorize?{urlencode(params)}",
            client=client,
            state=params["state"],
            nonce=params["nonce"],
            verifier=verifier,
        )

    def on_callback(self, page: Page) -> bool:
        return page.url.startswith(self.callback_url + "?")

    async def wait_for_callback(self, page: Page) -> dict[str, str]:
        """Wait until the browser shows the client's redirect URI; its query parameters."""
        await page.wait_for_url(
            lambda url: url.startswith(self.callback_url + "?"), timeout=STEP_TIMEOUT_MS
        )
        query = dict(parse_qsl(urlsplit(page.url).query, keep_blank_values=True))
        assert any(c.query == query for c in self.callbacks), "the client app saw no such call"
        if "code" in query:
            self.harness.remember(query["code"])
        return query


@dataclass(frozen=True)
class AuthorizeRequest:
    url: str
    client: Client
    state: str
    nonce: str
    verifier: str


@asynccontextmanager
async def open_stack(redis_url: str, database_url: str, keys: KeySet) -> AsyncIterator[Stack]:
    """Token service, login front-end and client app on loopback; all closed on exit."""
    async with AsyncExitStack() as stack:
        # Client application: records what reaches its redirect URI.
        received: list[Callback] = []

        async def callback(request: web.Request) -> web.Response:
            received.append(Callback(dict(request.query), time.time()))
            return web.Response(
                text="<!doctype html><title>Client app</title><h1>Back</h1>",
                content_type="text/html",
            )

        logouts: list[LogoutReceived] = []
        attack_page = [""]

        async def backchannel(request: web.Request) -> web.Response:
            form = await request.post()
            logouts.append(LogoutReceived(request.match_info["name"], str(form["logout_token"])))
            return web.Response(status=200, headers={"Cache-Control": "no-store"})

        async def attack(request: web.Request) -> web.Response:
            return web.Response(text=attack_page[0], content_type="text/html")

        client_app = web.Application()
        client_app.router.add_get("/cb", callback)
        client_app.router.add_get("/signed-out", callback)
        client_app.router.add_post("/backchannel/{name}", backchannel)
        client_app.router.add_get("/attack", attack)
        client_sock = _bound_socket()
        login_sock = _bound_socket()
        stack.callback(client_sock.close)
        stack.callback(login_sock.close)
        callback_url = f"http://127.0.0.1:{client_sock.getsockname()[1]}/cb"
        login_url = f"http://127.0.0.1:{login_sock.getsockname()[1]}"
        await _serve(stack, client_app, client_sock)

        # Token service: Redis codes, Postgres for the rest.
        codes_redis = aioredis.Redis.from_url(
            _redis_db(redis_url, CODES_REDIS_DB), socket_timeout=2.0, socket_connect_timeout=1.0
        )
        codes = RedisCodes(codes_redis)
        stack.push_async_callback(codes.close)
        await codes_redis.flushdb()
        pg = await Postgres.connect(database_url)
        stack.push_async_callback(pg.close)
        stores = Stores(
            codes=codes, clients=pg.clients, users=pg.users, grants=pg.grants, logouts=pg.logouts
        )
        svc = make_service(stores, keys, WallClock(), login_url=login_url)
        runners, public_url, internal_url = await start(svc)
        for runner in runners:
            stack.push_async_callback(runner.cleanup)
        deliverer = LogoutDeliverer(
            pg.logouts, pg.clients, svc.minter, svc.metrics, clock=svc.clock, poll=0.05
        )
        deliverer.start()
        stack.push_async_callback(deliverer.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        harness = Harness(svc, public_url, internal_url, http)
        harness.remember(INTERNAL_TOKEN)

        # Login front-end, wired as `open_login_context` does, with explicit stores.
        login_redis = connect(_redis_db(redis_url, LOGIN_REDIS_DB))
        stack.push_async_callback(login_redis.aclose)
        await login_redis.flushdb()
        settings = Settings(
            issuer=svc.settings.issuer,
            internal_token=INTERNAL_TOKEN,
            token_internal_url=internal_url,
            login_url=login_url,
            dev=True,
        )
        api_http = await stack.enter_async_context(aiohttp.ClientSession())
        ctx = LoginContext(
            settings=settings,
            users=pg.users,
            consents=PostgresConsents(pg),
            ephemeral=RedisEphemeral(login_redis, "login"),
            limiter=RedisFailureLimiter(login_redis),
            api=TokenAPI(internal_url, INTERNAL_TOKEN, api_http),
        )
        await _serve(stack, login_app(ctx), login_sock)

        yield Stack(
            harness=harness,
            login_url=login_url,
            callback_url=callback_url,
            callbacks=received,
            logouts=logouts,
            attack_page=attack_page,
        )


def cookie_named(cookies: list[Any], name: str) -> dict[str, Any]:
    found = [dict(c) for c in cookies if c["name"] == name]
    assert len(found) == 1, f"expected one {name} cookie, got {cookies}"
    return found[0]
