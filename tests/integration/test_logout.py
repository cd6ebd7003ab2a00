"""`GET|POST /logout` at the login front-end (OIDC RP-Initiated Logout 1.0), over real HTTP
next to a real token service, over memory and Redis+Postgres: the `id_token_hint` checked
against the published keys (expired ones accepted, forged, foreign and non-ID tokens
refused), exact `post_logout_redirect_uri` matching, `state`, the CSRF-protected
confirmation, and what ending the session does at the token service."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from yarl import URL

from tests.harness import Harness
from tests.integration.conftest import PASSWORD
from tests.jose import assertion, keypair
from tests.login_harness import Browser, Login, Page
from tokensvc.login.context import SESSION_COOKIE
from tokensvc.models import Client

pytestmark = pytest.mark.asyncio
SIGNED_OUT = "https://app.example.com/signed-out"


SECRETS: dict[str, str] = {}


async def rp(harness: Harness, scope: str = "openid profile email offline_access") -> Client:
    client, secret = await harness.client(
        name="Mail",
        scope_list=[scope],
        post_logout_redirect_uris=[SIGNED_OUT, "https://app.example.com/bye?from=op"],
    )
    assert secret is not None
    SECRETS[client.client_id] = secret
    return client


async def signed_in(
    harness: Harness, login: Login, client: Client, scope: str = "openid email"
) -> tuple[Browser, dict[str, Any]]:
    """A browser signed in to `client`, and the client's token response."""
    browser, form = await login.authorize(client, scope=scope)
    done = await browser.sign_in(form, "ada", PASSWORD)
    assert done.status == 302, done.text
    secret = SECRETS[client.client_id]
    reply = await harness.exchange(client, secret, done.query["code"], login.verifiers[-1])
    assert reply.status == 200, reply.body
    return browser, reply.body


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def session_deleted(page: Page) -> bool:
    return any(
        c.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in c
        for c in page.headers.getall("Set-Cookie", [])
    )


async def still_signed_in(login: Login, browser: Browser, client: Client) -> bool:
    """Whether `/authorize` goes straight back with a code (no sign-in form)."""
    page = await browser.get("/authorize", **login.authorize_params(client))
    return page.status == 302 and "code" in page.query


async def refresh_works(harness: Harness, client: Client, tokens: dict[str, Any]) -> bool:
    reply = await harness.token(
        client,
        SECRETS[client.client_id],
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
    )
    return reply.status == 200


async def test_a_hint_naming_the_session_signs_out_at_once_and_redirects_with_state(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    sid = claims_of(tokens["id_token"])["sid"]
    page = await browser.get(
        "/logout",
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=SIGNED_OUT,
        state="bye-123",
        ui_locales="fr-CA en",
    )
    assert page.status == 302, page.text
    assert page.location == SIGNED_OUT + "?state=bye-123"
    assert page.headers["Cache-Control"] == "no-store"
    assert session_deleted(page)
    assert not await refresh_works(harness, client, tokens)  # online grant revoked
    assert not await still_signed_in(login, browser, client)
    queued = await harness.stores.logouts.take_due(harness.clock() + 1, 30, 10)
    assert [(d.client_id, d.sub, d.sid) for d in queued] == [(client.client_id, person.sub, sid)]


async def test_registered_uri_keeps_its_own_query_and_post_works_like_get(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    page = await browser.post(
        "/logout",
        {
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://app.example.com/bye?from=op",
        },
    )
    assert page.status == 302 and page.location == "https://app.example.com/bye?from=op"


async def test_an_expired_hint_still_identifies_the_session(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client, scope="openid offline_access")
    harness.clock.advance(claims_of(tokens["id_token"])["exp"] - harness.clock() + 60)
    assert claims_of(tokens["id_token"])["exp"] < harness.clock()  # and the session is alive
    page = await browser.get(
        "/logout", id_token_hint=tokens["id_token"], post_logout_redirect_uri=SIGNED_OUT
    )
    assert page.status == 302 and page.location == SIGNED_OUT
    assert await refresh_works(harness, client, tokens)  # offline access outlives the session


async def test_without_a_hint_the_person_confirms_with_a_csrf_protected_form(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    asked = await browser.get(
        "/logout", client_id=client.client_id, post_logout_redirect_uri=SIGNED_OUT, state="s1"
    )
    assert asked.status == 200 and "Sign out?" in asked.text and "Mail" in asked.text
    fields = asked.fields
    assert fields["client_id"] == client.client_id and fields["state"] == "s1"
    assert fields["post_logout_redirect_uri"] == SIGNED_OUT and fields["csrf"]
    # Another site's forged form: no token, or a wrong one, ends nothing.
    for csrf in (None, "x" * 43, fields["csrf"][:-1]):
        forged = {k: v for k, v in fields.items() if k != "csrf"} | {"decision": "logout"}
        if csrf is not None:
            forged["csrf"] = csrf
        refused = await browser.post("/logout/confirm", forged)
        assert refused.status == 403 and "CSRF" in refused.text
        assert "Location" not in refused.headers
    # The CSRF token belongs to the session: another signed-in browser's does not fit.
    other, _ = await signed_in(harness, login, client)
    theirs = await other.get("/logout")
    refused = await browser.post("/logout/confirm", {**fields, "csrf": theirs.fields["csrf"]})
    assert refused.status == 403
    assert await refresh_works(harness, client, tokens)
    stay = await browser.post("/logout/confirm", {**fields, "decision": "stay"})
    assert stay.status == 200 and "still signed in" in stay.text
    assert await still_signed_in(login, browser, client)
    done = await browser.post("/logout/confirm", {**fields, "decision": "logout"})
    assert done.status == 302 and done.location == SIGNED_OUT + "?state=s1"
    assert session_deleted(done)
    assert not await still_signed_in(login, browser, client)
    # The other browser's session is its own, and still there.
    assert await still_signed_in(login, other, client)


async def test_a_hint_for_another_session_asks_first(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    _, old = await signed_in(harness, login, client)
    browser, _ = await signed_in(harness, login, client)
    page = await browser.get("/logout", id_token_hint=old["id_token"])
    assert page.status == 200 and "Sign out?" in page.text
    assert await still_signed_in(login, browser, client)


async def test_signed_out_page_without_a_redirect_uri(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    page = await browser.get("/logout", id_token_hint=tokens["id_token"], state="unused")
    assert page.status == 200 and "You are signed out" in page.text
    assert "Location" not in page.headers and session_deleted(page)


async def test_without_a_browser_session_the_hints_session_ends_at_the_token_service(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    _, tokens = await signed_in(harness, login, client)
    elsewhere = login.browser()  # the RP's user agent lost the front-end's cookie
    page = await elsewhere.get(
        "/logout", id_token_hint=tokens["id_token"], post_logout_redirect_uri=SIGNED_OUT
    )
    assert page.status == 302 and page.location == SIGNED_OUT
    assert not await refresh_works(harness, client, tokens)


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example.com/",
        SIGNED_OUT + "/",
        SIGNED_OUT + "?x=1",
        SIGNED_OUT.upper(),
        "https://app.example.com/bye",  # registered with its query only
        "https://app.example.com/cb",  # a redirect_uri, not a post-logout one
    ],
)
async def test_unregistered_redirect_uris_are_refused_without_redirecting(
    harness: Harness, login: Login, person, uri: str
) -> None:
    client = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    for params in (
        {"id_token_hint": tokens["id_token"]},
        {"client_id": client.client_id},
    ):
        page = await browser.get("/logout", post_logout_redirect_uri=uri, state="s", **params)
        assert page.status == 400 and "Location" not in page.headers
        assert "not registered" in page.text
    assert await still_signed_in(login, browser, client)


async def test_requests_that_cannot_be_trusted_are_error_pages(
    harness: Harness, login: Login, person
) -> None:
    client = await rp(harness)
    other = await rp(harness)
    browser, tokens = await signed_in(harness, login, client)
    hint = tokens["id_token"]
    head, body, sig = hint.split(".")
    forged_claims = base64.urlsafe_b64encode(
        orjson.dumps({**claims_of(hint), "sub": "someone-else"})
    )
    ours = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    issued = {"iss": harness.settings.issuer, "sub": person.sub, "aud": client.client_id}
    foreign = assertion(keypair(), **issued)
    same_kid = assertion(keypair(kid=ours), **issued, sid=claims_of(hint)["sid"])
    cases: list[tuple[dict[str, str], str]] = [
        ({"post_logout_redirect_uri": SIGNED_OUT}, "names no application"),
        ({"id_token_hint": f"{head}.{forged_claims.rstrip(b'=').decode()}.{sig}"}, "not one"),
        ({"id_token_hint": f"{head}.{body}.{sig[:-4]}AAAA"}, "not one"),
        ({"id_token_hint": "not-a-jwt"}, "not an ID Token"),
        ({"id_token_hint": tokens["access_token"]}, "not an ID Token"),
        ({"id_token_hint": foreign}, "not one"),
        ({"id_token_hint": same_kid}, "not one"),
        ({"id_token_hint": hint, "client_id": other.client_id}, "another application"),
        ({"client_id": "no-such-client"}, "not registered"),
    ]
    for params, message in cases:
        page = await browser.get("/logout", **params)
        assert page.status == 400, params
        assert "Location" not in page.headers and message in page.text, (params, page.text)
    twice = await browser.get(f"/logout?client_id={client.client_id}&client_id={other.client_id}")
    assert twice.status == 400 and "more than once" in twice.text
    assert await still_signed_in(login, browser, client)
    assert await refresh_works(harness, client, tokens)


async def test_token_service_down_keeps_the_session_and_says_so(make_login, person) -> None:
    down = await make_login(token_url="http://127.0.0.1:9")  # nothing listens there
    cookie, _ = await down.ctx.sessions.start(person.sub, int(time.time()))
    browser = down.browser()
    browser.http.cookie_jar.update_cookies({SESSION_COOKIE: cookie}, response_url=URL(down.url))
    asked = await browser.get("/logout")
    assert asked.status == 200 and asked.fields["csrf"]
    page = await browser.post("/logout/confirm", {**asked.fields, "decision": "logout"})
    assert page.status == 503 and "Location" not in page.headers
    assert not session_deleted(page)
    assert await down.ctx.sessions.get(cookie) is not None  # signing out again can finish
