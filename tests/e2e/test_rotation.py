"""Signing-key rotation without downtime, as an operator does it (issue 4, item 5): a running
`tokensvc serve token`, `tokensvc keys rotate`, SIGHUP (or the reload timer), real signals."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tests.e2e.procs import (
    Proc,
    add_machine_client,
    base_env,
    basic,
    http,
    jwt_header,
    migrated_database,
    run,
    service_env,
    wait_for,
    write_keys,
)
from tokensvc.signing.schedule import JWKS_MAX_AGE


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    algs = sorted({k["alg"] for k in jwks["keys"]})
    return dict(jwt.decode(token, JoseKeySet.import_key_set(jwks), algorithms=algs).claims)


def kids(jwks: dict[str, Any]) -> list[str]:
    return [k["kid"] for k in jwks["keys"]]


def test_rotate_and_sighup(postgres_admin_url: str, tmp_path: Path) -> None:
    with migrated_database(postgres_admin_url) as db:
        client = add_machine_client(base_env(TOKENSVC_DATABASE_URL=db), "--scope", "api:read")
        keys_file = write_keys(tmp_path)
        # the timer is out of the way: what happens here is SIGHUP's doing
        env = service_env(
            keys_file,
            TOKENSVC_DATABASE_URL=db,
            TOKENSVC_DRAIN_SECONDS="0",
            TOKENSVC_KEYS_RELOAD_SECONDS="3600",
        )
        base = env["TOKENSVC_ISSUER"]
        auth = basic(client["client_id"], client["client_secret"])

        def token() -> str:
            reply = http(f"{base}/token", data={"grant_type": "client_credentials"}, headers=auth)
            assert reply.status == 200, reply.body
            return str(reply.json()["access_token"])

        def jwks() -> dict[str, Any]:
            reply = http(f"{base}/jwks.json")
            assert reply.status == 200
            assert reply.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"
            return dict(reply.json())

        service = Proc(["serve", "token"], env, tmp_path)
        try:
            service.wait_http(f"{base}/healthz")
            assert JWKS_MAX_AGE == 300  # the rotation lead and the JWKS cache lifetime
            (old_kid,) = kids(jwks())
            old_token = token()
            assert jwt_header(old_token)["kid"] == old_kid

            # 1. rotate with no lead, SIGHUP: the new key is published and signs at once
            #    (or within a second, should the first key have begun signing this second)
            new_kid = (
                run(["keys", "rotate", str(keys_file), "--lead", "0"], base_env())
                .ok()
                .json()["kid"]
            )
            service.signal(signal.SIGHUP)
            wait_for(lambda: new_kid in kids(jwks()), 5, "the new key in /jwks.json")
            assert kids(jwks()) == [old_kid, new_kid]

            def signed_by_new_key() -> str | None:
                fresh = token()
                return fresh if jwt_header(fresh)["kid"] == new_kid else None

            new_token = wait_for(signed_by_new_key, 3, "a token signed by the new key")
            published = jwks()
            assert verify(old_token, published)["client_id"] == client["client_id"]
            assert verify(new_token, published)["client_id"] == client["client_id"]

            # 2. rotate with a lead: announced at once, signing by itself when the lead is up
            out = run(["keys", "rotate", str(keys_file), "--lead", "2"], base_env()).ok().json()
            third = out["kid"]
            service.signal(signal.SIGHUP)
            wait_for(lambda: third in kids(jwks()), 5, "the third key in /jwks.json")
            if time.time() < out["sign_at"] - 0.5:
                assert jwt_header(token())["kid"] == new_kid  # announced, not signing yet
            time.sleep(max(0.0, out["sign_at"] - time.time()) + 0.2)
            assert jwt_header(token())["kid"] == third  # no signal, no restart
            assert set(kids(jwks())) == {old_kid, new_kid, third}

            # 3. a broken file is logged and changes nothing
            good = keys_file.read_bytes()
            keys_file.write_text('{"keys": [')
            before = jwks()
            service.signal(signal.SIGHUP)
            wait_for(lambda: "keys reload failed" in service.stdout(), 5, "the failure logged")
            assert jwks() == before
            assert jwt_header(token())["kid"] == third
            assert verify(old_token, jwks())
            keys_file.write_bytes(good)

            service.signal(signal.SIGTERM)
            assert service.wait(10) == 0
        finally:
            service.kill()
        events = service.events()
        reloads = [e for e in events if e.get("event") == "keys reloaded"]
        assert len(reloads) == 2 and reloads[1]["signing_kid"] == new_kid
        assert any(e.get("event") == "signing key changed" and e["kid"] == third for e in events)
        failed = [e for e in events if e.get("event", "").startswith("keys reload failed")]
        assert failed and failed[0]["level"] == "warning"
        for key in json.loads(good)["keys"]:  # no private key material in any log line
            assert key["d"] not in service.stdout() + service.stderr()
        assert "Traceback" not in service.stderr()


def test_reload_timer_picks_up_a_rotation(tmp_path: Path) -> None:
    keys_file = write_keys(tmp_path, "--alg", "EdDSA")
    env = service_env(keys_file, TOKENSVC_DRAIN_SECONDS="0", TOKENSVC_KEYS_RELOAD_SECONDS="1")
    base = env["TOKENSVC_ISSUER"]
    service = Proc(["serve", "token"], env, tmp_path)  # memory stores
    try:
        service.wait_http(f"{base}/healthz")
        new_kid = run(["keys", "rotate", str(keys_file)], base_env()).ok().json()["kid"]
        wait_for(
            lambda: new_kid in kids(http(f"{base}/jwks.json").json()),
            5,
            "the timer to publish the new key",
        )
        service.signal(signal.SIGTERM)
        assert service.wait(10) == 0
    finally:
        service.kill()
    (event,) = [e for e in service.events() if e.get("event") == "keys reloaded"]
    assert event["reason"] == "timer"
