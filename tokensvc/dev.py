"""`tokensvc dev`: everything in one process, in memory, with a demo client and user."""

from __future__ import annotations

import secrets
import shlex

from tokensvc.config import Settings
from tokensvc.registration import new_client, new_user
from tokensvc.serve import run_token_service
from tokensvc.signing.keys import generate_jwks, keyset_from_jwks, load_keys_file
from tokensvc.storage.stores import Stores, memory_stores

DEMO_USERNAME = "demo"


def banner(settings: Settings, client_id: str, secret: str, password: str) -> str:
    base = settings.issuer
    curl = (
        f"curl -s -u {shlex.quote(client_id + ':' + secret)} "
        f"-d grant_type=client_credentials {base}/token"
    )
    return "\n".join([
        "tokensvc dev — token service running (in-memory storage, generated ES256 key)",
        "",
        f"  issuer / token endpoint  {base}/token",
        f"  discovery                {base}/.well-known/openid-configuration",
        f"  JWKS                     {base}/jwks.json",
        f"  internal API             http://127.0.0.1:{settings.internal_port}"
        f"  (Bearer {settings.internal_token})",
        "",
        f"  demo client  id {client_id}",
        f"               secret {secret}",
        f"  demo user    {DEMO_USERNAME} / {password}",
        "",
        "Get a token now:",
        f"  {curl}",
        "",
        "Ctrl-C stops.",
    ])


async def seed(stores: Stores, settings: Settings) -> tuple[str, str, str]:
    client, secret = new_client(
        name="Demo app",
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        redirect_uris=[f"http://127.0.0.1:{settings.login_port}/demo/callback"],
        scope_list=["openid profile email offline_access api:read"],
    )
    await stores.clients.add(client)
    password = secrets.token_urlsafe(12)
    await stores.users.add(new_user(username=DEMO_USERNAME, password=password,
                                    email="demo@example.com", name="Demo User"))
    assert secret is not None
    return client.client_id, secret, password


async def run(settings: Settings) -> None:
    if settings.internal_token is None:
        settings = settings.with_(internal_token=secrets.token_urlsafe(24))
    keys = (load_keys_file(settings.keys_file) if settings.keys_file
            else keyset_from_jwks(generate_jwks()))
    stores = memory_stores()
    client_id, secret, password = await seed(stores, settings)

    def started() -> None:
        print(banner(settings, client_id, secret, password), flush=True)

    await run_token_service(settings, keys, stores, started=started)
