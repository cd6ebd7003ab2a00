"""A sign-out is not lost when the token service dies mid-delivery (issue 17): a session ends,
the token service starts posting the logout token to a receiver that holds the request, and
is killed (SIGKILL) while it waits; a new token service on the same database delivers the
token once the dead one's lease has run out, with the same `jti`, verifiable against its
`/jwks.json`."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    Proc,
    add_client,
    base_env,
    basic,
    http,
    migrated_database,
    service_env,
    wait_for,
    write_keys,
)
from tests.harness import pkce_pair
from tokensvc.logout.deliverer import LEASE

REDIRECT = "https://app.example.com/cb"


class Receiver:
    """An RP's back-channel logout endpoint on loopback; holds the first request open."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.tokens.append(parse_qs(body.decode())["logout_token"][0])
                if len(receiver.tokens) == 1:
                    receiver.release.wait(20)  # the sender is killed meanwhile
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/backchannel"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rp = Receiver()
    try:
        yield rp
    finally:
        rp.close()


def _internal(env: dict[str, str], path: str, body: dict[str, Any]) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{env['TOKENSVC_INTERNAL_PORT']}{path}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {INTERNAL_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def test_a_logout_token_still_arrives_after_the_sender_is_killed(
    postgres_admin_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    with migrated_database(postgres_admin_url) as db:
        env_db = base_env(TOKENSVC_DATABASE_URL=db)
        client = add_client(
            env_db,
            "Web",
            ["authorization_code", "refresh_token"],
            "--redirect-uri",
            REDIRECT,
            "--backchannel-logout-uri",
            receiver.url,
        )
        keys_file = write_keys(tmp_path)
        env = service_env(keys_file, TOKENSVC_DATABASE_URL=db, TOKENSVC_DRAIN_SECONDS="0")
        first = Proc(["serve", "token"], env, tmp_path, "first")
        second = None
        try:
            first.wait_http(f"{env['TOKENSVC_ISSUER']}/healthz")
            verifier, challenge = pkce_pair()
            status, minted = _internal(
                env,
                "/internal/codes",
                {
                    "client_id": client["client_id"],
                    "redirect_uri": REDIRECT,
                    "scope": "openid",
                    "sub": "user-1",
                    "auth_time": int(time.time()),
                    "sid": "sid-1",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
            )
            assert status == 201
            exchanged = http(
                f"{env['TOKENSVC_ISSUER']}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": minted["code"],
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                headers=basic(client["client_id"], client["client_secret"]),
            )
            assert exchanged.status == 200, exchanged.body
            status, ended = _internal(
                env, "/internal/sessions/end", {"sub": "user-1", "sid": "sid-1"}
            )
            assert status == 200 and ended["grants"][0]["ended"] is True
            wait_for(lambda: receiver.tokens, 10, "the first delivery attempt")
            first.proc.send_signal(signal.SIGKILL)  # mid-delivery: the receiver holds it
            first.wait(10)
            killed_at = time.monotonic()
            receiver.release.set()
            second = Proc(["serve", "token"], env, tmp_path, "second")
            second.wait_http(f"{env['TOKENSVC_ISSUER']}/healthz")
            wait_for(lambda: len(receiver.tokens) >= 2, LEASE + 15, "the delivery after restart")
            assert time.monotonic() - killed_at < LEASE + 15
            jwks = json.loads(http(f"{env['TOKENSVC_ISSUER']}/jwks.json").body)
            keys = JoseKeySet.import_key_set(jwks)
            claims = [jwt.decode(t, keys, algorithms=["ES256"]).claims for t in receiver.tokens]
            assert {c["jti"] for c in claims} == {claims[0]["jti"]}  # one delivery, retried
            assert claims[-1]["sid"] == "sid-1" and claims[-1]["aud"] == client["client_id"]
            # delivered: nothing is owed any more, so nothing more arrives
            time.sleep(2)
            assert len(receiver.tokens) == 2
        finally:
            first.kill()
            if second is not None:
                second.kill()
