"""Signing in with a real browser (SPEC: Login front-end).

Headless Chromium walks the authorization code flow against the token service and the login
front-end on loopback, with Redis and Postgres behind them (`tests/e2e/browser.py`): the
sign-in form, the session cookie, failed sign-ins, consent, and the code exchanged for tokens
whose ID token is verified like a relying party would.

One browser and one stack per module; each test gets its own browser context (its own
cookies) and its own clients and user.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
)

from tests.e2e.browser import (
    ARTIFACTS,
    STEP_TIMEOUT_MS,
    AuthorizeRequest,
    Stack,
    cookie_named,
    left_half_hash,
)
from tests.e2e.conftest import MOBILE
from tokensvc.login.context import BROWSER_COOKIE, SESSION_COOKIE
from tokensvc.login.views import GENERIC_FAILURE

pytestmark = pytest.mark.asyncio(loop_scope="module")
expect.set_options(timeout=STEP_TIMEOUT_MS)


async def open_login(page: Page, request: AuthorizeRequest) -> None:
    response = await page.goto(request.url)
    assert response is not None and response.status == 200
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def submit_credentials(page: Page, username: str, password: str) -> float:
    """Fill in and send the sign-in form; the wall-clock time it was sent."""
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    sent_at = time.time()
    await page.get_by_role("button", name="Sign in").click()
    return sent_at


async def exchange(
    stack: Stack, request: AuthorizeRequest, secret: str, code: str
) -> dict[str, Any]:
    reply = await stack.harness.exchange(request.client, secret, code, request.verifier)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


async def test_sign_in_returns_a_code_that_yields_a_verified_id_token(
    stack: Stack, context: BrowserContext, browser: Browser
) -> None:
    client, secret = await stack.register_client("Photo Album")
    user, password = await stack.register_user("ada", name="Ada Lovelace", email="ada@example.com")
    request = stack.new_request(client)
    page = await context.new_page()
    await open_login(page, request)

    # The page names the client and has labelled fields.
    await expect(page).to_have_title(f"Sign in to continue to {client.name}")
    await expect(page.locator(".client")).to_have_text(client.name)
    username_field, password_field = page.get_by_label("Username"), page.get_by_label("Password")
    await expect(username_field).to_have_attribute("autocomplete", "username")
    await expect(password_field).to_have_attribute("type", "password")
    await expect(username_field).to_be_focused()
    await page.screenshot(path=ARTIFACTS / "login.png", full_page=True)
    await _mobile_screenshot(browser, stack.new_request(client))

    signed_in_at = await submit_credentials(page, "ada", password)
    query = await stack.wait_for_callback(page)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == request.state
    assert query["iss"] == stack.issuer

    # The session cookie, as the browser holds it.
    cookies = await context.cookies()
    session = cookie_named(cookies, SESSION_COOKIE)
    stack.harness.remember(session["value"], cookie_named(cookies, BROWSER_COOKIE)["value"])
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["secure"] is False  # dev=True over http; Secure outside dev
    assert session["path"] == "/"
    assert session["expires"] > time.time() + 3600  # a persistent session, not a tab's

    body = await exchange(stack, request, secret, query["code"])
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "openid profile email"
    assert body["refresh_token"]
    access = await stack.harness.verify(
        body["access_token"], typ="at+jwt", sub=user.sub, client_id=client.client_id
    )
    assert access["scope"] == "openid profile email"
    claims = await stack.harness.verify(
        body["id_token"], typ="JWT", sub=user.sub, aud=client.client_id, nonce=request.nonce
    )
    assert claims["azp"] == client.client_id
    assert int(signed_in_at) <= claims["auth_time"] <= signed_in_at + 5
    assert claims["at_hash"] == left_half_hash(body["access_token"], "ES256")
    assert claims["name"] == "Ada Lovelace"
    assert claims["email"] == "ada@example.com"
    assert claims["amr"] == ["pwd"]
    assert claims["sid"]

    # The code is single use.
    again = await stack.harness.exchange(client, secret, query["code"], request.verifier)
    assert again.status == 400 and again.body["error"] == "invalid_grant"


async def _mobile_screenshot(browser: Browser, request: AuthorizeRequest) -> None:
    phone = await browser.new_context(
        viewport=MOBILE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        page = await phone.new_page()
        await open_login(page, request)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= MOBILE["width"]
        await page.screenshot(path=ARTIFACTS / "login-mobile.png", full_page=True)
    finally:
        await phone.close()


async def test_second_authorize_in_the_same_browser_skips_the_form(
    stack: Stack, context: BrowserContext
) -> None:
    client, secret = await stack.register_client("Calendar")
    user, password = await stack.register_user(
        "grace", name="Grace Hopper", email="grace@example.com"
    )
    first = stack.new_request(client)
    page = await context.new_page()
    await open_login(page, first)
    await submit_credentials(page, "grace", password)
    first_query = await stack.wait_for_callback(page)
    first_claims = await _id_claims(stack, first, secret, first_query["code"])

    second = stack.new_request(client)
    response = await page.goto(second.url)
    assert response is not None and response.status == 200
    assert stack.on_callback(page)
    redirected_from = response.request.redirected_from
    assert redirected_from is not None and redirected_from.url == second.url
    query = await stack.wait_for_callback(page)
    assert query["state"] == second.state and query["iss"] == stack.issuer
    assert query["code"] != first_query["code"]
    claims = await _id_claims(stack, second, secret, query["code"])
    assert claims["sub"] == user.sub
    assert claims["nonce"] == second.nonce
    # Same session: the same authentication time and session id.
    assert claims["auth_time"] == first_claims["auth_time"]
    assert claims["sid"] == first_claims["sid"]


async def _id_claims(
    stack: Stack, request: AuthorizeRequest, secret: str, code: str
) -> dict[str, Any]:
    body = await exchange(stack, request, secret, code)
    return await stack.harness.verify(
        body["id_token"], typ="JWT", aud=request.client.client_id, nonce=request.nonce
    )


async def test_wrong_password_shows_the_generic_message_and_stays(
    stack: Stack, context: BrowserContext
) -> None:
    client, secret = await stack.register_client("Notes")
    _, password = await stack.register_user("linus", name="Linus T", email="linus@example.com")
    request = stack.new_request(client)
    page = await context.new_page()
    await open_login(page, request)
    before = len(stack.callbacks)

    await submit_credentials(page, "linus", password + "-wrong")
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text(GENERIC_FAILURE)
    assert page.url == stack.login_url + "/login"
    assert len(stack.callbacks) == before
    # The form is shown again: username kept, password not echoed back.
    await expect(page.get_by_label("Username")).to_have_value("linus")
    await expect(page.get_by_label("Password")).to_have_value("")
    await expect(page.get_by_label("Password")).to_have_attribute("aria-describedby", "form-error")
    await page.screenshot(path=ARTIFACTS / "login-error.png", full_page=True)
    assert cookie_named(await context.cookies(), BROWSER_COOKIE)
    assert not [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]

    # An unknown user reads exactly the same.
    await submit_credentials(page, "nobody-here", password)
    await expect(alert).to_have_text(GENERIC_FAILURE)
    assert len(stack.callbacks) == before

    # The same form still works with the right password.
    await submit_credentials(page, "linus", password)
    query = await stack.wait_for_callback(page)
    assert query["state"] == request.state
    await exchange(stack, request, secret, query["code"])


async def test_consent_is_asked_remembered_and_can_be_denied(
    stack: Stack, context: BrowserContext
) -> None:
    asking, secret = await stack.register_client("Travel Planner", require_consent=True)
    _, password = await stack.register_user(
        "katherine", name="Katherine Johnson", email="katherine@example.com"
    )
    request = stack.new_request(asking)
    page = await context.new_page()
    await open_login(page, request)
    await submit_credentials(page, "katherine", password)

    await expect(page.get_by_role("heading", name="Allow access?")).to_be_visible()
    await expect(page.locator(".client")).to_have_text("Travel Planner")
    await expect(page.locator("ul.scopes li")).to_have_text(
        [re.compile("account identifier"), "Your name", "Your email address"]
    )
    await page.screenshot(path=ARTIFACTS / "consent.png", full_page=True)
    await page.get_by_role("button", name="Allow").click()
    query = await stack.wait_for_callback(page)
    assert query["state"] == request.state and query["iss"] == stack.issuer
    claims = await _id_claims(stack, request, secret, query["code"])
    assert claims["email"] == "katherine@example.com"

    # Remembered: the same scope again goes straight back to the client.
    again = stack.new_request(asking)
    await page.goto(again.url)
    query = await stack.wait_for_callback(page)
    assert query["state"] == again.state and "code" in query
    await _id_claims(stack, again, secret, query["code"])

    # Another client that asks: denying sends the user back with access_denied.
    other, _ = await stack.register_client("Ad Network", require_consent=True)
    denied = stack.new_request(other)
    await page.goto(denied.url)
    await expect(page.locator(".client")).to_have_text("Ad Network")
    await page.get_by_role("button", name="Deny").click()
    query = await stack.wait_for_callback(page)
    assert query["error"] == "access_denied"
    assert query["state"] == denied.state
    assert query["iss"] == stack.issuer
    assert "code" not in query


async def test_a_pushed_request_signs_in_and_its_code_is_accepted(
    stack: Stack, context: BrowserContext
) -> None:
    """RFC 9126: the client pushes its parameters to `/par` (client-authenticated), then sends
    the browser to `/authorize` with only `client_id` and the `request_uri` it got back."""
    client, secret = await stack.register_client("Pushed Photos")
    user, password = await stack.register_user("ida", name="Ida Rhodes", email="ida@example.com")
    request = stack.new_request(client)
    params = dict(parse_qsl(urlsplit(request.url).query))
    pushed = await stack.harness.post_token(params, basic=(client.client_id, secret), path="/par")
    assert pushed.status == 201, pushed.body
    request_uri = pushed.body["request_uri"]
    stack.harness.remember(request_uri)
    query = urlencode({"client_id": client.client_id, "request_uri": request_uri})
    by_reference = replace(request, url=f"{stack.login_url}/authorize?{query}")
    page = await context.new_page()
    await open_login(page, by_reference)
    await expect(page.locator(".client")).to_have_text(client.name)
    await submit_credentials(page, "ida", password)
    callback = await stack.wait_for_callback(page)
    assert set(callback) == {"code", "state", "iss"} and callback["state"] == request.state
    claims = await _id_claims(stack, request, secret, callback["code"])
    assert claims["sub"] == user.sub and claims["nonce"] == request.nonce

    # One use: the same link again is an error page, not a redirect.
    again = await page.goto(by_reference.url)
    assert again is not None and again.status == 400
    assert not stack.on_callback(page)
