"""`/account` at the login front-end, over real HTTP next to a real token service, over memory
and Redis+Postgres: the apps a person let in (by consent or by grant) with their scopes and
APIs, and "remove access" (CSRF-protected) revoking the app's grants and its consent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.conftest import PASSWORD
from tests.login_harness import Browser, Login
from tokensvc.models import Client, Resource

pytestmark = pytest.mark.asyncio
API = "https://calendar.example.com"


async def sign_in_to(
    harness: Harness, login: Login, browser: Browser | None, client: Client, secret: str, **p: Any
) -> tuple[Browser, dict[str, Any]]:
    """Through the sign-in form (a new browser) or the session (`browser`), consenting when
    asked; the client's token response."""
    params = login.authorize_params(client, **p)
    if browser is None:
        browser = login.browser()
        form = await browser.get("/authorize", **params)
        page = await browser.sign_in(form, "ada", PASSWORD)
    else:
        page = await browser.get("/authorize", **params)
    if page.status == 200:  # the consent screen
        page = await browser.post("/consent", {**page.fields, "decision": "allow"})
    assert page.status == 302 and "code" in page.query, page.text
    reply = await harness.exchange(client, secret, page.query["code"], login.verifiers[-1])
    assert reply.status == 200, reply.body
    return browser, reply.body


async def test_not_signed_in(login: Login) -> None:
    page = await login.browser().get("/account")
    assert page.status == 401 and "not signed in" in page.text


async def test_lists_apps_with_scopes_and_apis_and_removes_one(
    harness: Harness, login: Login, person
) -> None:
    await harness.stores.resources.add(
        Resource(identifier=API, name="Calendar", scopes=frozenset({"calendar.read"}))
    )
    mail, mail_secret = await harness.client(
        name="Mail", require_consent=True, scope_list=["openid email offline_access"]
    )
    cal, cal_secret = await harness.client(
        name="Calendar app", resources=[API], scope_list=["openid calendar.read"]
    )
    browser, mail_tokens = await sign_in_to(
        harness, login, None, mail, mail_secret or "", scope="openid email offline_access"
    )
    _, cal_tokens = await sign_in_to(
        harness, login, browser, cal, cal_secret or "", scope="openid", resource=API
    )
    page = await browser.get("/account")
    assert page.status == 200 and "Signed in as" in page.text and "Ada" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    cards = page.text.split('<li class="app">')[1:]
    assert len(cards) == 2
    calendar_card, mail_card = cards  # sorted by name
    assert "Calendar app" in calendar_card and "Calendar (https://calendar.example.com)" in (
        calendar_card
    )
    assert "Your email address" in mail_card and "Stay connected" in mail_card
    assert "calendar.example.com" not in mail_card
    removal = page.fields  # the first form: Calendar app's
    assert removal["client_id"] == cal.client_id and removal["csrf"]

    # Removing Mail's access: its offline grant, its refresh and access tokens, its consent.
    mail_form = {"client_id": mail.client_id, "csrf": removal["csrf"]}
    for forged in ({"client_id": mail.client_id}, {**mail_form, "csrf": "guess"}):
        refused = await browser.post("/account/remove", forged)
        assert refused.status == 403 and "CSRF" in refused.text
    assert (await harness.internal_grants(person.sub)) == {mail.client_id, cal.client_id}
    done = await browser.post("/account/remove", mail_form)
    assert done.status == 303 and done.location == "/account"
    refused = await harness.token(
        mail,
        mail_secret,
        grant_type="refresh_token",
        refresh_token=mail_tokens["refresh_token"],
    )
    assert refused.status == 400 and refused.body["error"] == "invalid_grant"
    inactive = await harness.post_token_like(
        "/introspect", mail, mail_secret, token=mail_tokens["access_token"]
    )
    assert inactive.body == {"active": False}
    assert (await harness.internal_grants(person.sub)) == {cal.client_id}
    kept = await harness.post_token_like(
        "/introspect", cal, cal_secret, token=cal_tokens["access_token"]
    )
    assert kept.body["active"] is True
    after = await browser.get("/account")
    assert "Mail" not in after.text and "Calendar app" in after.text
    # The consent went too: signing in to Mail again asks for it.
    again = await browser.get("/authorize", **login.authorize_params(mail, scope="openid email"))
    assert again.status == 200 and "Allow access?" in again.text


async def test_bad_removals(harness: Harness, login: Login, person) -> None:
    client, secret = await harness.client(name="Mail")
    browser, _ = await sign_in_to(harness, login, None, client, secret or "")
    page = await browser.get("/account")
    csrf = page.fields["csrf"]
    missing = await browser.post("/account/remove", {"csrf": csrf})
    assert missing.status == 400
    unknown = await browser.post("/account/remove", {"csrf": csrf, "client_id": "nobody"})
    assert unknown.status == 303  # nothing to remove: nothing changes
    assert (await harness.internal_grants(person.sub)) == {client.client_id}
    stranger = login.browser()
    refused = await stranger.post("/account/remove", {"csrf": csrf, "client_id": client.client_id})
    assert refused.status == 401
    assert (await harness.internal_grants(person.sub)) == {client.client_id}


async def test_no_apps(harness: Harness, login: Login, person) -> None:
    client, secret = await harness.client(name="Mail")
    browser, _ = await sign_in_to(harness, login, None, client, secret or "")
    page = await browser.get("/account")
    await browser.post(
        "/account/remove", {"csrf": page.fields["csrf"], "client_id": client.client_id}
    )
    empty = await browser.get("/account")
    assert empty.status == 200 and "No app has access" in empty.text
