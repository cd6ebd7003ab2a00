"""The internal calls behind the account page: `POST /internal/access/list` (a person's live
grants) and `POST /internal/access/revoke` (every grant of one client, with its refresh
tokens and access tokens), and `GET /internal/jwks` (the published keys, for `id_token_hint`)."""

from __future__ import annotations

from tests.harness import Harness


async def test_list_then_revoke_one_clients_access(harness: Harness) -> None:
    h = harness
    mail, mail_secret = await h.client(name="Mail")
    chat, chat_secret = await h.client(name="Chat")
    tokens = {}
    for client, secret, scope in (
        (mail, mail_secret, "openid email"),
        (mail, mail_secret, "openid offline_access"),
        (chat, chat_secret, "openid profile"),
    ):
        code, verifier = await h.mint_code(client, scope=scope)
        reply = await h.exchange(client, secret, code, verifier)
        assert reply.status == 200, reply.body
        tokens[(client.client_id, scope)] = reply.body
    listed = await h.internal("POST", "/internal/access/list", json={"sub": "user-123"})
    assert listed.status == 200 and listed.headers["Cache-Control"] == "no-store"
    assert sorted((g["client_id"], g["scope"]) for g in listed.body["grants"]) == sorted(
        [
            (mail.client_id, "openid email"),
            (mail.client_id, "openid offline_access"),
            (chat.client_id, "openid profile"),
        ]
    )
    assert all(g["resources"] == [] and g["created_at"] > 0 for g in listed.body["grants"])

    revoked = await h.internal(
        "POST", "/internal/access/revoke", json={"sub": "user-123", "client_id": mail.client_id}
    )
    assert revoked.status == 200 and revoked.body == {"revoked": 2}
    for scope in ("openid email", "openid offline_access"):  # offline access too: all of it
        body = tokens[(mail.client_id, scope)]
        refused = await h.token(
            mail, mail_secret, grant_type="refresh_token", refresh_token=body["refresh_token"]
        )
        assert refused.status == 400 and refused.body["error"] == "invalid_grant"
        inactive = await h.post_token_like(
            "/introspect", mail, mail_secret, token=body["access_token"]
        )
        assert inactive.body == {"active": False}
    kept = tokens[(chat.client_id, "openid profile")]
    still = await h.token(
        chat, chat_secret, grant_type="refresh_token", refresh_token=kept["refresh_token"]
    )
    assert still.status == 200, still.body
    after = await h.internal("POST", "/internal/access/list", json={"sub": "user-123"})
    assert [g["client_id"] for g in after.body["grants"]] == [chat.client_id]
    again = await h.internal(
        "POST", "/internal/access/revoke", json={"sub": "user-123", "client_id": mail.client_id}
    )
    assert again.body == {"revoked": 0}


async def test_bad_bodies_are_refused_and_the_bearer_is_needed(harness: Harness) -> None:
    h = harness
    for path, good in (
        ("/internal/access/list", {"sub": "u"}),
        ("/internal/access/revoke", {"sub": "u", "client_id": "c"}),
    ):
        for body in (None, [], {}, {**good, "sub": ""}, {**good, "sub": 7}):
            reply = await h.internal("POST", path, json=body)
            assert reply.status == 400 and reply.body["error"] == "invalid_request", (path, body)
        denied = await h.internal("POST", path, json=good, bearer=None)
        assert denied.status == 401


async def test_internal_jwks_is_the_published_set(harness: Harness) -> None:
    published = await harness.get("/jwks.json")
    internal = await harness.internal("GET", "/internal/jwks")
    assert internal.status == 200 and internal.body == published.body
    assert (await harness.internal("GET", "/internal/jwks", bearer=None)).status == 401
