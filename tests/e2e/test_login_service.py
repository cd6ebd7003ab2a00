"""`tokensvc serve token` and `tokensvc serve login` as two separate processes on real
Postgres and Redis, as they run on Kubernetes: a person signs in at the front-end, the code it
minted through the internal API is redeemed at the token service, and the front-end drains on
SIGTERM like the token service does."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    Proc,
    add_client,
    base_env,
    basic,
    http,
    migrated_database,
    run,
    service_env,
    wait_for,
    write_keys,
)
from tests.servers import free_port, run_sync

pytestmark = pytest.mark.asyncio
LOGIN_REDIS_DB = 8
PASSWORD = "correct horse battery"
REDIRECT = "https://app.example.com/cb"
LOGIN_ROLE_SQL = Path(__file__).resolve().parents[2] / "k8s" / "login-role.sql"


async def execute_script(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_sign_in_across_two_processes_then_drain(
    postgres_admin_url: str, redis_url: str, tmp_path: Path
) -> None:
    with migrated_database(postgres_admin_url) as db:
        env_db = base_env(TOKENSVC_DATABASE_URL=db)
        client = add_client(
            env_db, "Web", ["authorization_code"], "--redirect-uri", REDIRECT, "--require-consent"
        )
        # The front-end connects with the least-privileged role the deployment docs give it.
        run_sync(lambda: execute_script(db, LOGIN_ROLE_SQL.read_text()))
        login_db = urlunsplit(
            urlsplit(db)._replace(
                netloc=f"tokensvc_login@{urlsplit(db).hostname}:{urlsplit(db).port}"
            )
        )
        run(
            ["user", "add", "--username", "ada", "--password-stdin", "--email", "ada@example.com"],
            env_db,
            stdin=PASSWORD + "\n",
        ).ok()
        keys_file = write_keys(tmp_path)
        login_port = free_port()
        redis = urlunsplit(urlsplit(redis_url)._replace(path=f"/{LOGIN_REDIS_DB}"))
        token_env = service_env(
            keys_file,
            TOKENSVC_DATABASE_URL=db,
            TOKENSVC_REDIS_URL=redis,
            TOKENSVC_LOGIN_PORT=str(login_port),
        )
        login_env = base_env(
            TOKENSVC_ISSUER=token_env["TOKENSVC_ISSUER"],
            TOKENSVC_DATABASE_URL=login_db,
            TOKENSVC_REDIS_URL=redis,
            TOKENSVC_INTERNAL_TOKEN=INTERNAL_TOKEN,
            TOKENSVC_TOKEN_INTERNAL_URL=f"http://127.0.0.1:{token_env['TOKENSVC_INTERNAL_PORT']}",
            TOKENSVC_HOST="127.0.0.1",
            TOKENSVC_LOGIN_PORT=str(login_port),
            TOKENSVC_LOG_FORMAT="json",
            TOKENSVC_DRAIN_SECONDS="2",
        )
        assert "TOKENSVC_KEYS_FILE" not in login_env  # the front-end holds no keys
        issuer = token_env["TOKENSVC_ISSUER"]
        login_url = f"http://127.0.0.1:{login_port}"
        token = Proc(["serve", "token"], token_env, tmp_path, "token")
        login = Proc(["serve", "login"], login_env, tmp_path, "login")
        try:
            token.wait_http(f"{issuer}/healthz")
            login.wait_http(f"{login_url}/healthz")
            assert http(f"{login_url}/readyz").status == 200
            meta = http(f"{issuer}/.well-known/openid-configuration").json()
            assert meta["authorization_endpoint"] == f"{login_url}/authorize"

            # Outside dev the cookies are Secure; over this test's plain http a browser would
            # not send them back, so the test carries the one cookie by hand.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
                params = {
                    "response_type": "code",
                    "client_id": client["client_id"],
                    "redirect_uri": REDIRECT,
                    "scope": "openid email",
                    "state": "xyz",
                    "nonce": "n1",
                }
                async with browser.get(f"{login_url}/authorize", params=params) as resp:
                    assert resp.status == 200
                    page = await resp.text()
                    (cookie,) = resp.headers.getall("Set-Cookie")
                assert "Secure" in cookie and "HttpOnly" in cookie
                fields = dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', page))
                async with browser.post(
                    f"{login_url}/login",
                    allow_redirects=False,
                    data={**fields, "username": "ada", "password": PASSWORD},
                    headers={"Cookie": cookie.split(";")[0]},
                ) as resp:
                    assert resp.status == 200, await resp.text()  # the consent screen
                    page = await resp.text()
                    cookies = "; ".join(
                        c.split(";")[0] for c in [cookie, *resp.headers.getall("Set-Cookie")]
                    )
                consent = dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', page))
                async with browser.post(
                    f"{login_url}/consent",
                    allow_redirects=False,
                    data={**consent, "decision": "allow"},
                    headers={"Cookie": cookies},
                ) as resp:
                    assert resp.status == 302, await resp.text()  # consent kept, code minted
                    location = resp.headers["Location"]
            assert location.startswith(REDIRECT + "?")
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            assert query["state"] == "xyz" and query["iss"] == issuer
            reply = http(
                f"{issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"],
                    "redirect_uri": REDIRECT,
                },
                headers=basic(client["client_id"], client["client_secret"]),
            )
            assert reply.status == 200, reply.body
            assert {"access_token", "id_token"} <= reply.json().keys()

            login.signal(signal.SIGTERM)
            wait_for(
                lambda: http(f"{login_url}/readyz").status == 503,
                2,
                "the front-end to report draining",
            )
            assert login.wait(10) == 0
            assert any(e.get("event") == "draining" for e in login.events())
            # Nothing secret in the front-end's log lines.
            log = login.stdout()
            for secret in (PASSWORD, query["code"], INTERNAL_TOKEN, fields["csrf"]):
                assert secret not in log
        finally:
            login.kill()
            token.kill()
