"""`tokensvc dev`: token service and login front-end in one process, in memory, with a demo
client and user, and a page that shows how to redeem the code the demo client receives."""

from __future__ import annotations

import os
import secrets
import shlex
from urllib.parse import urlencode

from aiohttp import web

from tokensvc.config import Settings
from tokensvc.http.server import serve
from tokensvc.login.app import login_app, open_login_context
from tokensvc.login.pages import callback_page
from tokensvc.registration import new_client, new_user
from tokensvc.service import Stores, TokenService
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import keyset_from_jwks, load_keys_file
from tokensvc.tracing import traced
from tokensvc.wiring.serve import delivering_logouts, token_listeners
from tokensvc.wiring.stores import memory_stores

DEMO_USERNAME = "demo"
DEMO_SCOPE = "openid profile email offline_access"


def exchange_curl(settings: Settings, client_id: str, secret: str, code: str) -> str:
    return (
        f"curl -s -u {shlex.quote(client_id + ':' + secret)} -d grant_type=authorization_code "
        f"-d code={shlex.quote(code)} "
        f"--data-urlencode redirect_uri={shlex.quote(callback_url(settings))} "
        f"{settings.issuer}/token"
    )


def callback_url(settings: Settings) -> str:
    return settings.login_url + "/demo/callback"


def authorize_url(settings: Settings, client_id: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": callback_url(settings),
            "scope": DEMO_SCOPE,
            "state": "demo-state",
            "nonce": secrets.token_urlsafe(8),
        }
    )
    return f"{settings.login_url}/authorize?{query}"


def banner(settings: Settings, client_id: str, secret: str, password: str) -> str:
    base = settings.issuer
    curl = (
        f"curl -s -u {shlex.quote(client_id + ':' + secret)} "
        f"-d grant_type=client_credentials {base}/token"
    )
    return "\n".join(
        [
            "tokensvc dev — token service and login front-end (in memory, generated ES256 key)",
            "",
            f"  issuer / token endpoint  {base}/token",
            f"  discovery                {base}/.well-known/openid-configuration",
            f"  JWKS                     {base}/jwks.json",
            f"  login front-end          {settings.login_url}/authorize",
            f"  account, sign out        {settings.login_url}/account  {settings.login_url}/logout",
            f"  internal API             http://127.0.0.1:{settings.internal_port}"
            f"  (Bearer {settings.internal_token})",
            "",
            f"  demo client  id {client_id}",
            f"               secret {secret}",
            f"  demo user    {DEMO_USERNAME} / {password}",
            "",
            "Get a machine token now:",
            f"  {curl}",
            "",
            "Sign in as the demo user in a browser (the page you land on prints the curl that",
            "exchanges the code):",
            f"  {authorize_url(settings, client_id)}",
            "",
            "Ctrl-C stops.",
        ]
    )


async def seed(stores: Stores, settings: Settings) -> tuple[str, str, str]:
    client, secret = new_client(
        name="Demo app",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        redirect_uris=[callback_url(settings)],
        scope_list=[DEMO_SCOPE + " api:read"],
    )
    await stores.clients.add(client)
    password = secrets.token_urlsafe(12)
    await stores.users.add(
        new_user(
            username=DEMO_USERNAME, password=password, email="demo@example.com", name="Demo User"
        )
    )
    assert secret is not None
    return client.client_id, secret, password


def dev_settings(settings: Settings) -> Settings:
    """Dev wires the two services to each other on loopback unless told otherwise."""
    changes: dict[str, object] = {}
    if settings.internal_token is None:
        changes["internal_token"] = secrets.token_urlsafe(24)
    if settings.token_internal_url == "http://127.0.0.1:8081":
        changes["token_internal_url"] = f"http://127.0.0.1:{settings.internal_port}"
    return settings.with_(**changes)


async def run(settings: Settings) -> None:
    settings = dev_settings(settings)
    keys = (
        load_keys_file(settings.keys_file)
        if settings.keys_file
        else keyset_from_jwks(generate_jwks())
    )
    stores = memory_stores()
    client_id, secret, password = await seed(stores, settings)

    async def demo_callback(request: web.Request) -> web.Response:
        code = request.query.get("code", "")
        if not code:
            text = f"The demo client got an error: {request.query.get('error', 'none')}"
            return web.Response(text=text, status=400)
        page = callback_page(code, exchange_curl(settings, client_id, secret, code))
        return web.Response(text=page, content_type="text/html")

    async with (
        traced("tokensvc", os.environ) as tracing,
        traced("tokensvc-login", os.environ, calls_out=True) as login_tracing,
        open_login_context(settings, users=stores.users, tracing=login_tracing) as login_ctx,
    ):
        login = login_app(login_ctx)
        login.router.add_get("/demo/callback", demo_callback)
        svc = TokenService(settings, stores, keys, tracing=tracing)
        async with delivering_logouts(svc):
            await serve(
                [*token_listeners(svc), (login, settings.host, settings.login_port)],
                started=lambda: print(banner(settings, client_id, secret, password), flush=True),
            )
