"""Graceful shutdown under load (issue 4, item 8): SIGTERM in the middle of a burst of /token
requests — client_credentials, code exchanges and refreshes — against real Postgres and Redis.

Every request must either complete with 200 and tokens that work (the access token verifies
against the JWKS fetched before the stop; the refresh token works against the service started
again on the same stores), or fail cleanly — refused connection or 503 — without having
consumed anything: the code or refresh token it presented still works after the restart.
Refresh runs with TOKENSVC_REFRESH_GRACE=0, so a refresh token used twice is refused and
revokes its family; a request that consumed its token without answering cannot hide.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    Proc,
    add_web_client,
    base_env,
    basic,
    http,
    migrated_database,
    service_env,
    wait_for,
    write_keys,
)
from tests.harness import pkce_pair

SHUTDOWN_REDIS_DB = 8
REDIRECT_URI = "https://app.example.com/cb"
DRAIN = 1.0  # TOKENSVC_DRAIN_SECONDS in this test
TICK = 0.005  # one request started every TICK seconds
TICKS = 420  # ~2.1 s of requests: before SIGTERM, through the drain, after the close
SIGTERM_AT = 0.4


@dataclass
class Outcome:
    kind: str  # client_credentials | authorization_code | refresh_token
    presented: Any  # (code, verifier) or the refresh token
    sent_at: float
    status: int | None = None  # None: the connection failed
    done_at: float = 0.0
    body: Any = None
    error: str = ""


async def test_sigterm_during_a_burst(
    postgres_admin_url: str, redis_url: str, tmp_path: Path
) -> None:
    with migrated_database(postgres_admin_url) as db:
        client = add_web_client(
            base_env(TOKENSVC_DATABASE_URL=db),
            "Burst",
            REDIRECT_URI,
            "openid api:read",
            "client_credentials",
        )
        keys_file = write_keys(tmp_path)
        env = service_env(
            keys_file,
            TOKENSVC_DATABASE_URL=db,
            TOKENSVC_REFRESH_GRACE="0",
            TOKENSVC_DRAIN_SECONDS=str(int(DRAIN)),
            TOKENSVC_CODE_TTL="300",
            TOKENSVC_REDIS_URL=urlunsplit(
                urlsplit(redis_url)._replace(path=f"/{SHUTDOWN_REDIS_DB}")
            ),
        )
        await Burst(client, env, tmp_path, db).run()


class Burst:
    def __init__(self, client: dict[str, Any], env: dict[str, str], workdir: Path, db: str) -> None:
        self.client = client
        self.db = db
        self.env = env
        self.workdir = workdir
        self.base = env["TOKENSVC_ISSUER"]
        self.internal = f"http://127.0.0.1:{env['TOKENSVC_INTERNAL_PORT']}"
        self.auth = basic(client["client_id"], client["client_secret"])

    async def start(self, drain: str) -> Proc:
        proc = Proc(["serve", "token"], self.env | {"TOKENSVC_DRAIN_SECONDS": drain}, self.workdir)
        await asyncio.to_thread(proc.wait_http, f"{self.base}/healthz")
        return proc

    async def mint(self, http: aiohttp.ClientSession) -> tuple[str, str]:
        verifier, challenge = pkce_pair()
        body = {
            "client_id": self.client["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid api:read",
            "sub": "user-1",
            "auth_time": int(time.time()),
            "nonce": "n-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        async with http.post(
            f"{self.internal}/internal/codes",
            json=body,
            headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["code"]), verifier

    async def post(self, http: aiohttp.ClientSession, kind: str, presented: Any) -> tuple[int, Any]:
        data = {"grant_type": kind}
        if kind == "authorization_code":
            data |= {
                "code": presented[0],
                "code_verifier": presented[1],
                "redirect_uri": REDIRECT_URI,
            }
        elif kind == "refresh_token":
            data["refresh_token"] = presented
        async with http.post(f"{self.base}/token", data=data, headers=self.auth) as resp:
            return resp.status, await resp.json(content_type=None)

    async def run(self) -> None:
        service = await self.start(drain=str(int(DRAIN)))
        try:
            await self.burst(service)
        finally:
            service.kill()
        assert "Traceback" not in service.stderr()

    async def burst(self, service: Proc) -> None:
        keep_alive = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        try:
            async with keep_alive.get(f"{self.base}/jwks.json") as resp:
                jwks = JoseKeySet.import_key_set(await resp.json(content_type=None))
            codes = [await self.mint(keep_alive) for _ in range(TICKS // 6 + 1)]
            refresh_tokens = []
            for _ in range(TICKS // 6 + 1):
                status, body = await self.post(
                    keep_alive, "authorization_code", await self.mint(keep_alive)
                )
                assert status == 200, body
                refresh_tokens.append(body["refresh_token"])

            outcomes: list[Outcome] = []
            readiness: list[tuple[float, int | None, Any]] = []
            started = time.monotonic()

            async def fire(outcome: Outcome, http: aiohttp.ClientSession) -> None:
                try:
                    outcome.status, outcome.body = await self.post(
                        http, outcome.kind, outcome.presented
                    )
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                    outcome.error = type(exc).__name__
                outcome.done_at = time.monotonic() - started

            async def probe() -> None:  # what a load balancer sees
                while time.monotonic() - started < TICKS * TICK + 0.5:
                    try:
                        async with fresh.get(f"{self.base}/readyz") as resp:
                            readiness.append(
                                (
                                    time.monotonic() - started,
                                    resp.status,
                                    await resp.json(content_type=None),
                                )
                            )
                    except aiohttp.ClientConnectionError:
                        readiness.append((time.monotonic() - started, None, None))
                    await asyncio.sleep(0.02)

            async def stop() -> float:
                await asyncio.sleep(SIGTERM_AT)
                service.signal(signal.SIGTERM)
                return time.monotonic() - started

            async def hold() -> None:
                """Slow Postgres down across the moment the listener closes, so that code
                exchanges and refreshes are in flight then: they must still complete."""
                await asyncio.sleep(SIGTERM_AT + DRAIN - 0.3)
                conn = await asyncpg.connect(self.db)
                try:
                    async with conn.transaction():
                        await conn.execute("LOCK TABLE refresh_tokens IN ACCESS EXCLUSIVE MODE")
                        await asyncio.sleep(0.8)
                finally:
                    await conn.close()

            tasks = [asyncio.create_task(probe()), asyncio.create_task(hold())]
            stopper = asyncio.create_task(stop())
            for tick in range(TICKS):
                if tick % 6 == 1 and codes:
                    kind, presented = "authorization_code", codes.pop()
                elif tick % 6 == 4 and refresh_tokens:
                    kind, presented = "refresh_token", refresh_tokens.pop()
                else:
                    kind, presented = "client_credentials", None
                outcome = Outcome(kind, presented, time.monotonic() - started)
                outcomes.append(outcome)
                tasks.append(asyncio.create_task(fire(outcome, fresh if tick % 2 else keep_alive)))
                await asyncio.sleep(max(0.0, (tick + 1) * TICK - (time.monotonic() - started)))
            sigterm_at = await stopper
            await asyncio.gather(*tasks)
            status = await asyncio.to_thread(service.wait, DRAIN + 10)
            stopped_at = time.monotonic() - started
            assert status == 0, service.stdout()[-2000:]
        finally:
            await keep_alive.close()
            await fresh.close()

        # --- what the clients saw -----------------------------------------------------------
        unexpected = [
            (o.kind, o.status, o.body) for o in outcomes if o.status not in (200, 503, None)
        ]
        assert not unexpected, unexpected[:5]
        served = [o for o in outcomes if o.status == 200]
        failed = [o for o in outcomes if o.status != 200]
        # requests in flight when the port closed (held up by Postgres) still completed
        closed_at = min(o.done_at for o in failed)  # the first refusal
        assert any(
            o.done_at > closed_at + 0.2 and o.kind != "client_credentials" for o in served
        ), "no request was in flight across the close"
        assert any(o.sent_at > sigterm_at + 0.1 for o in served), "nothing served while draining"
        assert failed and all(o.sent_at > sigterm_at for o in failed), "failures before SIGTERM"
        assert {o.kind for o in served} == {
            "client_credentials",
            "authorization_code",
            "refresh_token",
        }
        assert {o.kind for o in failed} >= {"authorization_code", "refresh_token"}
        assert stopped_at - sigterm_at < DRAIN + 5
        # the load balancer saw 503 "draining" before the port closed
        after = [(t, s, b) for t, s, b in readiness if t > sigterm_at + 0.05]
        assert after and after[0][1] == 503 and after[0][2] == {"status": "draining"}
        assert all(s != 200 for _, s, _ in after)
        for o in served:  # every token issued verifies against the JWKS fetched before
            claims = jwt.decode(o.body["access_token"], jwks, algorithms=["ES256"]).claims
            assert claims["client_id"] == self.client["client_id"]
            if o.kind != "client_credentials":
                assert jwt.decode(o.body["id_token"], jwks, algorithms=["ES256"]).claims
                assert o.body["refresh_token"]

        # --- start again on the same stores: nothing was lost or half-consumed --------------
        service = await self.start(drain="0")
        try:
            async with aiohttp.ClientSession() as http:
                for o in served:
                    if o.kind != "client_credentials":  # issued refresh tokens work
                        status, body = await self.post(
                            http, "refresh_token", o.body["refresh_token"]
                        )
                        assert status == 200, (o.kind, body)
                for o in failed:  # what a failed request presented was not consumed
                    if o.kind != "client_credentials":
                        status, body = await self.post(http, o.kind, o.presented)
                        assert status == 200, (o.kind, o.error, body)
            service.signal(signal.SIGTERM)
            assert await asyncio.to_thread(service.wait, 10) == 0
        finally:
            service.kill()
        events = service.events()
        assert not [e for e in events if e.get("level") == "error"]


def test_a_second_signal_ends_the_drain_and_sigint_skips_it(tmp_path: Path) -> None:
    keys_file = write_keys(tmp_path)
    env = service_env(keys_file, TOKENSVC_DRAIN_SECONDS="60")  # memory stores
    base = env["TOKENSVC_ISSUER"]

    service = Proc(["serve", "token"], env, tmp_path)
    try:
        service.wait_http(f"{base}/healthz")
        service.signal(signal.SIGTERM)
        ready = wait_for(
            lambda: (r := http(f"{base}/readyz")).status == 503 and r, 5, "/readyz to turn 503"
        )
        assert ready.json() == {"status": "draining"}
        alive = http(f"{base}/healthz")  # still served while draining, asking to reconnect
        assert alive.status == 200 and alive.headers["Connection"] == "close"
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(5) == 0 and time.monotonic() - started < 5
    finally:
        service.kill()

    service = Proc(["serve", "token"], env, tmp_path)
    try:
        service.wait_http(f"{base}/healthz")
        started = time.monotonic()
        service.signal(signal.SIGINT)  # an operator's Ctrl-C: no load balancer to wait for
        assert service.wait(5) == 0 and time.monotonic() - started < 5
    finally:
        service.kill()
