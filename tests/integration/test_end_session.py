"""`POST /internal/sessions/end` (the login front-end ending a browser session): the
session's grants without `offline_access` are revoked (their refresh tokens refused, their
access tokens inactive at /introspect), offline grants and other sessions' grants survive,
one logout delivery per client is queued, and bad bodies get RFC 6749 JSON errors."""

from __future__ import annotations

from typing import Any

from tests.harness import Harness


async def _signed_in(h: Harness, scope: str, sid: str = "session-1") -> tuple[Any, str, dict]:
    client, secret = await h.client()
    code, verifier = await h.mint_code(client, scope=scope, sid=sid)
    reply = await h.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    return client, secret or "", reply.body


async def test_ending_a_session_revokes_its_online_grants_and_queues_logouts(
    harness: Harness,
) -> None:
    h = harness
    web, web_secret, online = await _signed_in(h, "openid email")
    app, app_secret, offline = await _signed_in(h, "openid offline_access")
    other, other_secret, elsewhere = await _signed_in(h, "openid", sid="session-2")
    reply = await h.internal(
        "POST", "/internal/sessions/end", json={"sub": "user-123", "sid": "session-1"}
    )
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert sorted((g["client_id"], g["ended"]) for g in reply.body["grants"]) == sorted(
        [(web.client_id, True), (app.client_id, False)]
    )
    refused = await h.token(
        web, web_secret, grant_type="refresh_token", refresh_token=online["refresh_token"]
    )
    assert refused.status == 400 and refused.body["error"] == "invalid_grant"
    kept = await h.token(
        app, app_secret, grant_type="refresh_token", refresh_token=offline["refresh_token"]
    )
    assert kept.status == 200, kept.body  # offline access outlives the session
    untouched = await h.token(
        other, other_secret, grant_type="refresh_token", refresh_token=elsewhere["refresh_token"]
    )
    assert untouched.status == 200, untouched.body
    inactive = await h.post_token_like("/introspect", web, web_secret, token=online["access_token"])
    assert inactive.status == 200 and inactive.body == {"active": False}
    queued = await h.stores.logouts.take_due(h.clock() + 1, 30, 10)
    assert sorted(d.client_id for d in queued) == sorted([web.client_id, app.client_id])
    again = await h.internal(
        "POST", "/internal/sessions/end", json={"sub": "user-123", "sid": "session-1"}
    )
    assert [(g["client_id"], g["ended"]) for g in again.body["grants"]] == [(app.client_id, False)]


async def test_bad_bodies_are_refused_and_the_bearer_is_needed(harness: Harness) -> None:
    h = harness
    path = "/internal/sessions/end"
    for body in (None, [], {"sub": "user-123"}, {"sub": "", "sid": "s"}, {"sub": 1, "sid": "s"}):
        reply = await h.internal("POST", path, json=body)
        assert reply.status == 400 and reply.body["error"] == "invalid_request", body
    denied = await h.internal("POST", path, json={"sub": "u", "sid": "s"}, bearer=None)
    assert denied.status == 401
