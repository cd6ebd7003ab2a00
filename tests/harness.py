"""A running token service on real loopback sockets, and a client that speaks to it.

Every credential the harness handles (client secrets, codes, tokens, verifiers, the internal
bearer) is remembered in `secrets`, so the log check can prove none reached a log line.
"""

from __future__ import annotations

import base64
import hashlib
import secrets as pysecrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet
from joserfc.jwt import JWTClaimsRegistry
from multidict import CIMultiDict

from tokensvc.config import Settings
from tokensvc.http.apps import internal_app, public_app
from tokensvc.http.server import TLS_CONTEXT, app_runner
from tokensvc.models import Client
from tokensvc.registration import new_client
from tokensvc.service import TokenService
from tokensvc.signing.keys import KeySet
from tokensvc.wiring.stores import Stores

INTERNAL_TOKEN = "internal-test-token-0123456789"


class Clock:
    """A controllable wall clock shared by the service and the memory stores."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pkce_pair() -> tuple[str, str]:
    verifier = pysecrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def code_request(client: Client, **fields: Any) -> dict[str, Any]:
    """The least a request to mint a code for `client` says (POST /internal/codes: its first
    redirect URI, no PKCE, an old sign-in); `fields` add to it or replace it."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "scope": "openid",
        "sub": "u1",
        "auth_time": 1_700_000_000,
    }
    if "redirect_uri" not in fields:
        body["redirect_uri"] = client.redirect_uris[0]
    return body | fields


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any


@dataclass
class Harness:
    svc: TokenService
    public_url: str
    internal_url: str
    http: aiohttp.ClientSession
    secrets: set[str] = field(default_factory=set)
    raw: Stores | None = None  # the stores as created, before the service's timing wrapper

    @property
    def settings(self) -> Settings:
        return self.svc.settings

    @property
    def stores(self) -> Stores:
        return self.svc.stores

    @property
    def clock(self) -> Clock:
        assert isinstance(self.svc.clock, Clock)
        return self.svc.clock

    def remember(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v)

    async def client(self, **kwargs: Any) -> tuple[Client, str | None]:
        kwargs.setdefault("name", "Test app")
        kwargs.setdefault(
            "grant_types", ["authorization_code", "refresh_token", "client_credentials"]
        )
        if "authorization_code" in kwargs["grant_types"]:
            kwargs.setdefault("redirect_uris", ["https://app.example.com/cb"])
        kwargs.setdefault("scope_list", ["openid profile email offline_access api:read"])
        client, secret = new_client(**kwargs)
        assert await self.stores.clients.add(client)
        self.remember(secret)
        return client, secret

    async def internal(
        self, method: str, path: str, *, json: Any = None, bearer: str | None = INTERNAL_TOKEN
    ) -> Reply:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        async with self.http.request(
            method, self.internal_url + path, json=json, headers=headers
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.json(content_type=None))

    async def internal_grants(self, sub: str) -> set[str]:
        """The clients holding a live grant of `sub` (`/internal/access/list`)."""
        reply = await self.internal("POST", "/internal/access/list", json={"sub": sub})
        assert reply.status == 200, reply.body
        return {g["client_id"] for g in reply.body["grants"]}

    async def request_code(self, client: Client, **fields: Any) -> Reply:
        """POST /internal/codes of `code_request(client, **fields)`, whatever the answer
        (`mint_code` expects a 201)."""
        return await self.internal("POST", "/internal/codes", json=code_request(client, **fields))

    async def mint_code(self, client: Client, **overrides: Any) -> tuple[str, str | None]:
        """Mint a code via the internal API; returns (code, verifier or None)."""
        verifier, challenge = pkce_pair()
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": "openid profile email",
            "sub": "user-123",
            "auth_time": int(self.clock()) - 5,
            "nonce": "n-0S6_WzA2Mj",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "amr": ["pwd"],
            "sid": "session-1",
            "claims": {"email": "ada@example.com", "name": "Ada Lovelace"},
        }
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        reply = await self.internal("POST", "/internal/codes", json=body)
        assert reply.status == 201, reply.body
        self.remember(reply.body["code"], verifier)
        return reply.body["code"], verifier if "code_challenge" in body else None

    async def post_token(
        self,
        data: dict[str, str] | Iterable[tuple[str, str]] | bytes | str,
        *,
        basic: tuple[str, str] | None = None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        path: str = "/token",
    ) -> Reply:
        hdrs: CIMultiDict[str] = CIMultiDict(headers or {})  # a list: a header may repeat
        if basic is not None:
            raw = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()
            hdrs["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        async with self.http.post(self.public_url + path, data=data, headers=hdrs) as resp:
            raw_body = await resp.read()
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = raw_body
            if isinstance(body, dict):
                self.remember(
                    body.get("access_token"), body.get("refresh_token"), body.get("id_token")
                )
            return Reply(resp.status, resp.headers, body)

    async def token(self, client: Client, secret: str | None, **params: str) -> Reply:
        """POST /token authenticating the way `client` registered."""
        return await self.post_token_like("/token", client, secret, **params)

    async def post_token_like(
        self, path: str, client: Client | None, secret: str | None, **params: str
    ) -> Reply:
        """POST a client-authenticated form to `path` (no authentication without a client)."""
        if client is not None and client.auth_method == "client_secret_basic":
            assert secret is not None
            return await self.post_token(params, basic=(client.client_id, secret), path=path)
        data = dict(params)
        if client is not None:
            data["client_id"] = client.client_id
            if client.auth_method == "client_secret_post":
                assert secret is not None
                data["client_secret"] = secret
        return await self.post_token(data, path=path)

    async def exchange(
        self, client: Client, secret: str | None, code: str, verifier: str | None
    ) -> Reply:
        params = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uris[0],
        }
        if verifier is not None:
            params["code_verifier"] = verifier
        return await self.token(client, secret, **params)

    async def get(self, path: str) -> Reply:
        async with self.http.get(self.public_url + path) as resp:
            return Reply(resp.status, resp.headers, await resp.json(content_type=None))

    async def verify(self, token: str, *, typ: str, **expected: Any) -> dict[str, Any]:
        """Verify like an independent resource server: fetch the JWKS over HTTP, check the
        signature with joserfc and the claims with its registry."""
        jwks = (await self.get("/jwks.json")).body
        keyset = JoseKeySet.import_key_set(jwks)
        algs = sorted({k["alg"] for k in jwks["keys"]})
        decoded = jwt.decode(token, keyset, algorithms=algs)
        assert decoded.header["typ"] == typ
        assert decoded.header["kid"] in {k["kid"] for k in jwks["keys"]}
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.settings.issuer},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "sub": {"essential": True},
        }
        options.update({name: {"essential": True, "value": v} for name, v in expected.items()})
        registry = JWTClaimsRegistry(now=int(self.clock()), leeway=0, **options)
        registry.validate(decoded.claims)
        return dict(decoded.claims)


async def start(svc: TokenService) -> tuple[list[web.AppRunner], str, str]:
    """Both listeners on loopback; the public one over HTTPS when its settings say so
    (`TOKENSVC_TLS_*`, as `tokensvc.http.server.serve` does)."""
    runners, urls = [], []
    for app in (public_app(svc), internal_app(svc)):
        runner = app_runner(app)  # the production runner: its limits and its logger
        await runner.setup()
        tls = app.get(TLS_CONTEXT)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        urls.append(f"{'https' if tls else 'http'}://{host}:{port}")
    return runners, urls[0], urls[1]


def make_service(stores: Stores, keys: KeySet, clock: Clock, **settings: Any) -> TokenService:
    base = Settings(
        issuer="http://127.0.0.1:8080",
        internal_token=INTERNAL_TOKEN,
        login_url="http://127.0.0.1:8090",
    )
    return TokenService(base.with_(**settings), stores, keys, clock=clock)
