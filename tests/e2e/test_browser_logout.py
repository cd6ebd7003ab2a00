"""Signing out and the account page with a real browser (SPEC: Logout; issue 17).

Headless Chromium against the token service, its back-channel logout deliverer and the
login front-end on loopback, with Redis and Postgres behind them (`tests/e2e/browser.py`):

* two clients sharing one browser session both receive a logout token, verified against
  `/jwks.json` like a relying party would; the online grant ends, the offline one survives;
* an unregistered `post_logout_redirect_uri` is an error page, never a redirect;
* the confirmation, signed-out and account pages on a desktop and a phone viewport
  (screenshots in tests/artifacts, looked at by a person during development);
* every form of the front-end refuses a post from another origin of the same site (where
  `SameSite=Lax` still sends the cookies), so only its CSRF token stops it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from html import escape
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.browser import (
    ARTIFACTS,
    STEP_TIMEOUT_MS,
    AuthorizeRequest,
    LogoutReceived,
    Stack,
    cookie_named,
)
from tests.e2e.conftest import MOBILE
from tests.e2e.test_browser_login import exchange, open_login, submit_credentials
from tokensvc.login.context import SESSION_COOKIE
from tokensvc.models import Client

pytestmark = pytest.mark.asyncio(loop_scope="module")
expect.set_options(timeout=STEP_TIMEOUT_MS)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


async def sign_in(
    stack: Stack,
    page: Page,
    request: AuthorizeRequest,
    secret: str,
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Walk `request` (through the sign-in form with `credentials`, else on the session);
    the client's token response."""
    if credentials is not None:
        await open_login(page, request)
        await submit_credentials(page, *credentials)
    else:
        await page.goto(request.url)
    query = await stack.wait_for_callback(page)
    return await exchange(stack, request, secret, query["code"])


async def refreshes(stack: Stack, client: Client, secret: str, tokens: dict[str, Any]) -> bool:
    reply = await stack.harness.token(
        client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    if reply.status == 200:
        tokens.update(reply.body)  # the new refresh token, and a new ID token
    return reply.status == 200


async def logouts_for(stack: Stack, sid: str, count: int) -> list[LogoutReceived]:
    """The logout tokens received for session `sid`, once `count` have arrived."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in stack.logouts if f'"{sid}"' in _payload(r.logout_token)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def _payload(token: str) -> str:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


async def test_two_clients_sharing_a_session_both_receive_verified_logout_tokens(
    stack: Stack, context: BrowserContext
) -> None:
    mail, mail_secret = await stack.register_client("Mail")
    drive, drive_secret = await stack.register_client("Drive")
    user, password = await stack.register_user("mail", name="Margaret H", email="m@example.com")
    page = await context.new_page()
    online = await sign_in(stack, page, stack.new_request(mail), mail_secret, ("mail", password))
    offline = await sign_in(
        stack, page, stack.new_request(drive, "openid offline_access"), drive_secret, None
    )
    mail_id = await stack.harness.verify(online["id_token"], typ="JWT", aud=mail.client_id)
    drive_id = await stack.harness.verify(offline["id_token"], typ="JWT", aud=drive.client_id)
    sid = mail_id["sid"]
    assert sid and drive_id["sid"] == sid  # one browser session, one sid in every ID token
    first_id_token = offline["id_token"]
    assert await refreshes(stack, drive, drive_secret, offline)
    assert offline["id_token"] != first_id_token
    refreshed = await stack.harness.verify(offline["id_token"], typ="JWT", aud=drive.client_id)
    assert refreshed["sid"] == sid

    # Mail's own ID token names the current session: signed out at once, back with state.
    state = "after-logout-7"
    logout = f"{stack.login_url}/logout?" + urlencode(
        {
            "id_token_hint": online["id_token"],
            "post_logout_redirect_uri": stack.signed_out_url,
            "state": state,
        }
    )
    started = time.monotonic()
    await page.goto(logout)
    await page.wait_for_url(f"{stack.signed_out_url}?state={state}")
    assert time.monotonic() - started < 5  # no receiver held the redirect
    assert not [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]

    received = await logouts_for(stack, sid, 2)
    assert sorted(r.client_id for r in received) == ["Drive", "Mail"]
    for r, client in zip(sorted(received, key=lambda r: r.client_id), (drive, mail), strict=True):
        stack.harness.remember(r.logout_token)
        claims = await stack.harness.verify(
            r.logout_token, typ="logout+jwt", aud=client.client_id, sub=user.sub, sid=sid
        )
        assert claims["events"] == {BACKCHANNEL_EVENT: {}}
        assert "nonce" not in claims and claims["jti"]

    # Online access ended with the session; offline access outlives it.
    assert not await refreshes(stack, mail, mail_secret, online)
    assert await refreshes(stack, drive, drive_secret, offline)
    # And the browser must sign in again.
    await open_login(page, stack.new_request(mail))


async def test_an_unregistered_post_logout_redirect_uri_is_refused(
    stack: Stack, context: BrowserContext
) -> None:
    client, secret = await stack.register_client("Notes")
    _, password = await stack.register_user("notes", name="N N", email="n@example.com")
    page = await context.new_page()
    tokens = await sign_in(stack, page, stack.new_request(client), secret, ("notes", password))
    before = len(stack.callbacks)
    for uri in ("https://evil.example.com/", stack.signed_out_url + "/x", stack.callback_url):
        query = urlencode(
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": uri, "state": "s"}
        )
        response = await page.goto(f"{stack.login_url}/logout?{query}")
        assert response is not None and response.status == 400
        assert page.url.startswith(stack.login_url + "/logout")
        await expect(page.get_by_role("heading")).to_have_text("This sign-out link is not valid")
    assert len(stack.callbacks) == before
    assert await refreshes(stack, client, secret, tokens)  # nothing ended
    await page.goto(stack.new_request(client).url)  # still signed in
    await stack.wait_for_callback(page)


async def _phone(browser: Browser, context: BrowserContext) -> BrowserContext:
    """A phone-sized context holding the desktop context's cookies (the same session)."""
    phone = await browser.new_context(
        viewport=MOBILE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    phone.set_default_timeout(STEP_TIMEOUT_MS)
    await phone.add_cookies(await context.cookies())  # type: ignore[arg-type]
    return phone


async def _shoot(page: Page, name: str) -> None:
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"]  # no sideways scrolling


async def test_account_page_lists_and_removes_access_then_signing_out_confirms(
    stack: Stack, context: BrowserContext, browser: Browser
) -> None:
    photos, photos_secret = await stack.register_client("Photos", require_consent=True)
    calendar, calendar_secret = await stack.register_client("Calendar Sync")
    _, password = await stack.register_user("photos", name="Hedy Lamarr", email="h@example.com")
    page = await context.new_page()
    request = stack.new_request(photos)
    await open_login(page, request)
    await submit_credentials(page, "photos", password)
    await page.get_by_role("button", name="Allow").click()
    query = await stack.wait_for_callback(page)
    await exchange(stack, request, photos_secret, query["code"])
    calendar_request = stack.new_request(calendar, "openid email offline_access")
    calendar_tokens = await sign_in(stack, page, calendar_request, calendar_secret)
    stack.harness.remember(cookie_named(await context.cookies(), SESSION_COOKIE)["value"])

    await page.goto(stack.login_url + "/account")
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    cards = page.locator("li.app")
    await expect(cards.locator("h2")).to_have_text(["Calendar Sync", "Photos"])
    await expect(cards.nth(0).locator("ul.scopes li")).to_contain_text(
        ["account identifier", "Your email address", "Stay connected"]
    )
    await _shoot(page, "account")
    phone = await _phone(browser, context)
    try:
        on_phone = await phone.new_page()
        await on_phone.goto(stack.login_url + "/account")
        await expect(on_phone.locator("li.app h2")).to_have_count(2)
        await _shoot(on_phone, "account-mobile")
        await on_phone.goto(stack.login_url + "/logout")
        await expect(on_phone.get_by_role("heading", name="Sign out?")).to_be_visible()
        await _shoot(on_phone, "logout-confirm-mobile")
    finally:
        await phone.close()

    await page.get_by_role("button", name="Remove access for Calendar Sync").click()
    await page.wait_for_url(stack.login_url + "/account")
    await expect(page.locator("li.app h2")).to_have_text(["Photos"])
    assert not await refreshes(stack, calendar, calendar_secret, calendar_tokens)

    # Signing out from a link that proves nothing: the person confirms.
    await page.goto(stack.login_url + f"/logout?client_id={photos.client_id}")
    await expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    await expect(page.locator(".client")).to_have_text("Photos")
    await _shoot(page, "logout-confirm")
    await page.get_by_role("button", name="Stay signed in").click()
    await expect(page.get_by_role("heading")).to_have_text("You are still signed in")
    await page.goto(stack.login_url + f"/logout?client_id={photos.client_id}")
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_role("heading")).to_have_text("You are signed out")
    await _shoot(page, "signed-out")
    await page.goto(stack.login_url + "/account")
    await expect(page.get_by_role("heading")).to_have_text("You are not signed in")


def _forged(action: str, fields: dict[str, str]) -> str:
    """Another origin's page with a form posting `fields` to the front-end."""
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<!doctype html><title>Win a prize</title><form method="post" action="{escape(action)}">'
        f'{inputs}<button type="submit">Claim</button></form>'
    )


async def _submit_forged(stack: Stack, page: Page, path: str, fields: dict[str, str]) -> None:
    stack.attack_page[0] = _forged(stack.login_url + path, fields)
    await page.goto(stack.app_url + "/attack")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Claim").click()
    await expect(page.get_by_role("heading")).to_have_text("Request refused")


async def test_every_form_refuses_a_post_from_another_origin(
    stack: Stack, context: BrowserContext
) -> None:
    asking, asking_secret = await stack.register_client("Survey", require_consent=True)
    _, password = await stack.register_user("survey", name="Alan T", email="a@example.com")
    _, attacker_password = await stack.register_user("mallory", name="M", email="x@example.com")
    page = await context.new_page()

    # /login: the attacker's own sign-in form (login CSRF) does not belong to this browser.
    attacker = await context.browser.new_context()  # type: ignore[union-attr]
    try:
        theirs = await attacker.new_page()
        await open_login(theirs, stack.new_request(asking))
        fields = {
            name: await theirs.locator(f'input[name="{name}"]').get_attribute("value") or ""
            for name in ("interaction", "csrf")
        }
    finally:
        await attacker.close()
    await open_login(page, stack.new_request(asking))  # the victim has a browser cookie
    await _submit_forged(
        stack, page, "/login", {**fields, "username": "mallory", "password": attacker_password}
    )
    assert not [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]

    # /consent: the victim's own pending consent, without its CSRF token.
    await open_login(page, stack.new_request(asking))
    await submit_credentials(page, "survey", password)
    await expect(page.get_by_role("heading", name="Allow access?")).to_be_visible()
    interaction = await page.locator('input[name="interaction"]').get_attribute("value") or ""
    await _submit_forged(
        stack, page, "/consent", {"interaction": interaction, "csrf": "x", "decision": "allow"}
    )
    request = stack.new_request(asking)  # signed in now: straight to the consent screen
    await page.goto(request.url)
    await page.get_by_role("button", name="Allow").click()
    query = await stack.wait_for_callback(page)
    tokens = await exchange(stack, request, asking_secret, query["code"])

    # /account/remove and /logout/confirm: a guessed token ends and removes nothing.
    await _submit_forged(stack, page, "/account/remove", {"client_id": asking.client_id})
    await _submit_forged(stack, page, "/logout/confirm", {"decision": "logout", "csrf": "x" * 43})
    assert await refreshes(stack, asking, asking_secret, tokens)
    await page.goto(stack.login_url + "/account")
    await expect(page.locator("li.app h2")).to_have_text(["Survey"])
