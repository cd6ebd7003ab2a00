"""The login front-end over real HTTP, next to a real token service, over memory and
Redis+Postgres: /authorize validation, CSRF, failed-login limits, sessions, consent."""

from __future__ import annotations

import gzip
import re

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.harness import Harness
from tests.integration.conftest import PASSWORD
from tests.login_harness import Login
from tests.servers import free_port
from tokensvc.login.context import BROWSER_COOKIE, SESSION_COOKIE
from tokensvc.login.views import GENERIC_FAILURE
from tokensvc.registration import new_user

pytestmark = pytest.mark.asyncio


async def signed_in(login: Login, client, **params):
    browser, form = await login.authorize(client, **params)
    assert form.status == 200 and "<form" in form.text
    done = await browser.sign_in(form, "ada", PASSWORD)
    assert done.status == 302, done.text
    return browser, done


async def test_sign_in_mints_a_code_the_token_service_accepts(
    harness: Harness, login: Login, person
) -> None:
    client, secret = await harness.client()
    browser = login.browser()
    params = login.authorize_params(client)
    form = await browser.get("/authorize", **params)
    assert form.status == 200
    assert "Test app" in form.text and 'name="username"' in form.text
    assert form.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert form.headers["X-Frame-Options"] == "DENY"
    done = await browser.sign_in(form, "ada", PASSWORD)
    assert done.status == 302
    assert done.location.startswith(client.redirect_uris[0] + "?")
    query = done.query
    assert query["state"] == "st-123" and query["iss"] == harness.settings.issuer
    cookie = done.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith("tokensvc_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert "Secure" not in session_cookie  # dev over http; see test_cookies_secure_outside_dev
    reply = await harness.exchange(client, secret, query["code"], login.verifiers[-1])
    assert reply.status == 200, reply.body
    claims = await harness.verify(
        reply.body["id_token"], typ="JWT", sub=person.sub, nonce="nonce-456", aud=client.client_id
    )
    assert abs(claims["auth_time"] - harness.clock()) <= 2
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is False
    assert claims["name"] == "Ada Lovelace" and claims["amr"] == ["pwd"] and claims["sid"]


async def test_cookies_secure_outside_dev(harness: Harness, make_login, person) -> None:
    login = await make_login(dev=False)
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    (browser_cookie,) = form.headers.getall("Set-Cookie")
    assert "Secure" in browser_cookie and "HttpOnly" in browser_cookie
    # Over plain http a browser would not send a Secure cookie back; send it by hand.
    value = browser_cookie.split(";")[0].split("=", 1)[1]
    async with browser.http.post(
        login.url + "/login",
        allow_redirects=False,
        data={**form.fields, "username": "ada", "password": PASSWORD},
        headers={"Cookie": f"tokensvc_browser={value}"},
    ) as resp:
        assert resp.status == 302
        (session_cookie,) = resp.headers.getall("Set-Cookie")
    assert session_cookie.startswith("tokensvc_session=")
    assert "Secure" in session_cookie and "SameSite=Lax" in session_cookie


async def test_session_skips_the_form_and_prompt_login_forces_it(
    harness: Harness, login: Login, person
) -> None:
    client, _ = await harness.client()
    browser, _ = await signed_in(login, client)
    again = await browser.get("/authorize", **login.authorize_params(client, state="s2"))
    assert again.status == 302 and again.query["state"] == "s2" and "code" in again.query
    forced = await browser.get("/authorize", **login.authorize_params(client, prompt="login"))
    assert forced.status == 200 and 'name="password"' in forced.text


async def test_max_age_forces_a_new_login_and_auth_time_is_the_real_login(
    harness: Harness, login: Login, person
) -> None:
    client, secret = await harness.client()
    browser, first = await signed_in(login, client)
    login_time = int(harness.clock())
    harness.clock.advance(120)
    fresh = await browser.get("/authorize", **login.authorize_params(client, max_age="300"))
    assert fresh.status == 302  # signed in 120 s ago: within max_age
    code, verifier = fresh.query["code"], login.verifiers[-1]
    stale = await browser.get("/authorize", **login.authorize_params(client, max_age="60"))
    assert stale.status == 200 and 'name="password"' in stale.text
    reply = await harness.exchange(client, secret, code, verifier)
    assert reply.status == 200, reply.body
    claims = await harness.verify(reply.body["id_token"], typ="JWT")
    assert claims["auth_time"] == login_time  # not the time of the silent re-authorize
    assert first.query["code"] != code


async def test_prompt_none_without_session(harness: Harness, login: Login) -> None:
    client, _ = await harness.client()
    page = await login.browser().get("/authorize", **login.authorize_params(client, prompt="none"))
    assert page.status == 302
    assert page.query == {
        "error": "login_required",
        "state": "st-123",
        "iss": harness.settings.issuer,
        "error_description": page.query["error_description"],
    }


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/cb/extra",
        "https://app.example.com/cb?x=1",
        "http://app.example.com/cb",
        "https://evil.example.com/cb",
        "https://app.example.com/CB",
        "https://app.example.com/cb#frag",
        "https://app.example.com.evil.com/cb",
        "",
    ],
)
async def test_unregistered_redirect_uri_shows_a_page_never_redirects(
    harness: Harness, login: Login, redirect_uri: str
) -> None:
    client, _ = await harness.client()
    page = await login.browser().get(
        "/authorize", **login.authorize_params(client, redirect_uri=redirect_uri or None)
    )
    assert page.status == 400
    assert "Location" not in page.headers
    assert "<h1>" in page.text and "redirect_uri" in page.text


async def test_unknown_client_shows_a_page(harness: Harness, login: Login) -> None:
    client, _ = await harness.client()
    params = login.authorize_params(client, client_id="nobody")
    page = await login.browser().get("/authorize", **params)
    assert page.status == 400 and "Location" not in page.headers
    assert "not registered" in page.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": None}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "select_account"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"request": "eyJ..."}, "request_not_supported"),
    ],
)
async def test_other_errors_redirect_with_state_and_iss(
    harness: Harness, login: Login, change: dict, error: str
) -> None:
    client, _ = await harness.client()
    page = await login.browser().get("/authorize", **login.authorize_params(client, **change))
    assert page.status == 302, page.text
    assert page.location.startswith(client.redirect_uris[0] + "?")
    assert page.query["error"] == error
    assert page.query["state"] == "st-123" and page.query["iss"] == harness.settings.issuer


async def test_public_client_needs_pkce(harness: Harness, login: Login) -> None:
    client, _ = await harness.client(grant_types=["authorization_code"], public=True)
    page = await login.browser().get(
        "/authorize",
        **login.authorize_params(client, code_challenge=None, code_challenge_method=None),
    )
    assert page.status == 302 and page.query["error"] == "invalid_request"


async def test_csrf_missing_or_wrong_is_403(harness: Harness, login: Login, person) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    fields = form.fields
    for csrf in (None, "wrong", fields["csrf"][:-1] + "x"):
        data = {"interaction": fields["interaction"], "username": "ada", "password": PASSWORD}
        if csrf is not None:
            data["csrf"] = csrf
        refused = await browser.post("/login", data)
        assert refused.status == 403 and "CSRF" in refused.text
    # A form posted from another browser (login CSRF) is refused even with the right token.
    other = login.browser()
    stolen = await other.post("/login", {**fields, "username": "ada", "password": PASSWORD})
    assert stolen.status == 403
    ok = await browser.sign_in(form, "ada", PASSWORD)
    assert ok.status == 302


async def test_wrong_password_and_unknown_user_get_one_generic_message(
    harness: Harness, login: Login, person
) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    wrong = await browser.sign_in(form, "ada", "not the password")
    unknown = await browser.sign_in(form, "nobody", "not the password")
    assert wrong.status == unknown.status == 401
    assert wrong.alert == unknown.alert == GENERIC_FAILURE
    assert 'value="ada"' in wrong.text  # the username is kept, the password is not
    assert "not the password" not in wrong.text


async def test_failed_logins_are_limited_per_username(
    harness: Harness, login: Login, person
) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    for _ in range(4):
        assert (await browser.sign_in(form, "ada", "bad password")).status == 401
    locked = await browser.sign_in(form, "ada", "bad password")
    assert locked.status == 429
    assert locked.alert is not None and locked.alert.startswith("Too many failed attempts")
    seconds = int(locked.alert.split("Try again in ")[1].split(" s")[0])
    assert 0 < seconds <= 300
    # Even the right password is refused while locked ...
    assert (await browser.sign_in(form, "ada", PASSWORD)).status == 429
    # Other usernames are not affected (window expiry: tests/contract/test_login_stores.py).
    other = new_user(username="grace", password=PASSWORD)
    assert await harness.stores.users.add(other)
    assert (await browser.sign_in(form, "grace", PASSWORD)).status == 302


async def test_failed_logins_are_limited_per_address(
    harness: Harness, login: Login, person
) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    statuses = [(await browser.sign_in(form, f"user{i}", "bad password")).status for i in range(20)]
    assert statuses[:19] == [401] * 19 and statuses[19] == 429
    # Another username from the same address is locked out too.
    assert (await browser.sign_in(form, "ada", PASSWORD)).status == 429


async def test_address_limit_behind_a_trusted_proxy(harness: Harness, make_login, person) -> None:
    login = await make_login(trusted_proxies=("127.0.0.0/8",))
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    statuses = [
        (await browser.sign_in(form, f"u{i}", "bad password", attacker)).status for i in range(20)
    ]
    assert statuses[-1] == 429
    # Someone else behind the same ingress is not locked out by the attacker's failures.
    neighbour = {"X-Forwarded-For": "198.51.100.77"}
    assert (await browser.sign_in(form, "ada", PASSWORD, neighbour)).status == 302


async def test_consent_is_asked_and_remembered(harness: Harness, login: Login, person) -> None:
    client, _ = await harness.client(require_consent=True)
    browser, form = await login.authorize(client)
    consent = await browser.sign_in(form, "ada", PASSWORD)
    assert consent.status == 200 and 'action="/consent"' in consent.text
    assert "Your email address" in consent.text
    allowed = await browser.post("/consent", {**consent.fields, "decision": "allow"})
    assert allowed.status == 302 and "code" in allowed.query
    again = await browser.get("/authorize", **login.authorize_params(client))
    assert again.status == 302 and "code" in again.query  # remembered
    wider = await browser.get(
        "/authorize", **login.authorize_params(client, scope="openid profile email offline_access")
    )
    assert wider.status == 200 and 'action="/consent"' in wider.text  # a new scope asks again
    silent = await browser.get(
        "/authorize", **login.authorize_params(client, scope="openid offline_access", prompt="none")
    )
    assert silent.status == 302 and silent.query["error"] == "consent_required"
    denied = await browser.post("/consent", {**wider.fields, "decision": "deny"})
    assert denied.status == 302 and denied.query["error"] == "access_denied"
    assert denied.query["state"] == "st-123"


async def test_consent_form_needs_csrf(harness: Harness, login: Login, person) -> None:
    client, _ = await harness.client(require_consent=True)
    browser, form = await login.authorize(client)
    consent = await browser.sign_in(form, "ada", PASSWORD)
    fields = consent.fields
    refused = await browser.post(
        "/consent", {"interaction": fields["interaction"], "decision": "allow"}
    )
    assert refused.status == 403


async def test_token_service_unreachable_is_a_friendly_503(
    harness: Harness, make_login, person
) -> None:
    login = await make_login(token_url=f"http://127.0.0.1:{free_port()}")
    client, _ = await harness.client()
    page = await login.browser().get("/authorize", **login.authorize_params(client))
    assert page.status == 503 and "Location" not in page.headers
    assert "Temporarily unavailable" in page.text
    ready = await login.browser().get("/readyz")
    assert ready.status == 503


async def test_token_service_down_after_sign_in_mints_nothing(
    harness: Harness, make_login, person
) -> None:
    login = await make_login()
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    login.ctx.api._base = f"http://127.0.0.1:{free_port()}"  # the token service goes away mid-flow
    page = await browser.sign_in(form, "ada", PASSWORD)
    assert page.status == 503 and "Location" not in page.headers


async def test_health_and_readiness(login: Login) -> None:
    browser = login.browser()
    assert (await browser.get("/healthz")).status == 200
    ready = await browser.get("/readyz")
    assert ready.status == 200, ready.text


# --------------------------------------------------------------------------- hostile input


async def test_a_spoofed_forwarded_line_before_the_proxys_cannot_choose_the_address(
    harness: Harness, make_login, person
) -> None:
    """RFC 7230 §3.2.2: the header's lines are one list. A client that sends its own line
    before the ingress's appended one still has its failures counted against the address the
    ingress saw, whatever it writes in its own line."""
    login = await make_login(trusted_proxies=("127.0.0.0/8",))
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    statuses = []
    for i in range(20):
        headers = CIMultiDict(
            [("X-Forwarded-For", f"203.0.113.{i}"), ("X-Forwarded-For", "198.51.100.66")]
        )
        async with browser.http.post(
            login.url + "/login",
            data={**form.fields, "username": f"u{i}", "password": "bad password"},
            headers=headers,
            allow_redirects=False,
        ) as resp:
            statuses.append(resp.status)
    assert statuses[:19] == [401] * 19 and statuses[19] == 429
    neighbour = {"X-Forwarded-For": "198.51.100.77"}
    assert (await browser.sign_in(form, "ada", PASSWORD, neighbour)).status == 302


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"interaction=x&csrf=y&username=ada&password=\xff"),
        ({"Content-Encoding": "gzip"}, gzip.compress(gzip.compress(b"username=ada"))),
        ({}, b"username=a&username=b"),
    ],
    ids=["not utf-8", "gzip twice", "a field twice"],
)
async def test_a_form_that_does_not_decode_is_a_400_page(
    login: Login, headers: dict[str, str], body: bytes
) -> None:
    """The login front-end reads its forms with `/token`'s decoder: bad input is a page."""
    if headers.get("Content-Encoding") == "gzip":
        headers = {"Content-Encoding": "gzip, gzip"}
    browser = login.browser()
    for path in ("/login", "/consent"):
        async with browser.http.post(
            login.url + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
            allow_redirects=False,
        ) as resp:
            text = await resp.text()
            assert resp.status == 400, text
            assert resp.content_type == "text/html" and "could not be read" in text
            assert resp.headers["X-Frame-Options"] == "DENY"


async def test_a_nul_in_the_username_is_bad_input_not_an_outage(
    harness: Harness, login: Login, person, log_sink
) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    mark = log_sink.mark()
    looked_up: list[str] = []
    users = login.ctx.users
    original = users.by_username

    async def spy(username: str):
        looked_up.append(username)
        return await original(username)

    login.ctx.users = type("Spy", (), {"by_username": staticmethod(spy), "ping": users.ping})()
    try:
        page = await browser.sign_in(form, "ada\x00", PASSWORD)
    finally:
        login.ctx.users = users
    assert page.status == 400 and "could not be read" in page.text
    assert looked_up == []  # refused before any store call
    events = log_sink.events(mark)
    assert not [e for e in events if e.get("error") == "temporarily_unavailable"], events
    # The form still works afterwards.
    assert (await browser.sign_in(form, "ada", PASSWORD)).status == 302


async def test_a_pending_consent_for_a_removed_client_is_a_page_not_a_redirect(
    harness: Harness, login: Login, person
) -> None:
    for decision in ("allow", "deny"):
        client, _ = await harness.client(require_consent=True)
        browser, form = await login.authorize(client)
        consent = await browser.sign_in(form, "ada", PASSWORD)
        assert consent.status == 200 and 'action="/consent"' in consent.text
        assert await harness.stores.clients.remove(client.client_id)
        answer = await browser.post("/consent", {**consent.fields, "decision": decision})
        assert answer.status == 400 and "no longer available" in answer.text, answer
        assert "Location" not in answer.headers
        assert await login.ctx.consents.granted(person.sub, client.client_id) == frozenset()


async def test_a_client_removed_during_sign_in_is_a_page_not_a_redirect(
    harness: Harness, login: Login, person
) -> None:
    client, _ = await harness.client()
    browser, form = await login.authorize(client)
    assert await harness.stores.clients.remove(client.client_id)
    answer = await browser.sign_in(form, "ada", PASSWORD)
    assert answer.status == 400 and "no longer available" in answer.text, answer
    assert "Location" not in answer.headers


async def test_every_sign_in_binds_a_fresh_browser_value(
    harness: Harness, login: Login, person
) -> None:
    """A browser-binding cookie planted by a related domain (cookie tossing) is replaced at the
    start of each sign-in, so the sign-in is never bound to a value an attacker knows."""
    client, _ = await harness.client()
    planted = "planted-by-a-sibling-domain"
    browser = login.browser()
    async with browser.http.get(
        login.url + "/authorize",
        params=login.authorize_params(client),
        headers={"Cookie": f"{BROWSER_COOKIE}={planted}"},
        allow_redirects=False,
    ) as resp:
        issued = [c for c in resp.headers.getall("Set-Cookie") if c.startswith(BROWSER_COOKIE)]
        text = await resp.text()
    assert resp.status == 200
    (cookie,) = issued
    fresh = cookie.split(";")[0].split("=", 1)[1]
    assert fresh and fresh != planted
    fields = dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', text))
    # The planted value does not pass the binding; the fresh one does (sent by hand, from a
    # client without a cookie jar, so each request carries exactly the one value).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
        for value, expected in ((planted, 403), (fresh, 302)):
            async with bare.post(
                login.url + "/login",
                data={**fields, "username": "ada", "password": PASSWORD},
                headers={"Cookie": f"{BROWSER_COOKIE}={value}"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == expected
    # Each sign-in that starts in the same browser gets yet another value.
    starts = [await browser.get("/authorize", **login.authorize_params(client)) for _ in "ab"]
    values = {p.headers["Set-Cookie"].split(";")[0] for p in starts}
    assert len(values) == 2 and all(v.startswith(f"{BROWSER_COOKIE}=") for v in values)


async def test_cookies_carry_the_host_prefix_over_https(
    harness: Harness, make_login, person
) -> None:
    login = await make_login(dev=False, login_url="https://login.example.com")
    client, _ = await harness.client()
    browser = login.browser()
    form = await browser.get("/authorize", **login.authorize_params(client))
    (issued,) = form.headers.getall("Set-Cookie")
    assert issued.startswith(f"__Host-{BROWSER_COOKIE}=")
    assert "Secure" in issued and "Path=/" in issued and "Domain" not in issued
    value = issued.split(";")[0].split("=", 1)[1]
    async with browser.http.post(
        login.url + "/login",
        data={**form.fields, "username": "ada", "password": PASSWORD},
        headers={"Cookie": f"__Host-{BROWSER_COOKIE}={value}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        (session,) = resp.headers.getall("Set-Cookie")
    assert session.startswith(f"__Host-{SESSION_COOKIE}=") and "Secure" in session
