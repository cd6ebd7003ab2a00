"""The login front-end on a real loopback socket, and a cookie-keeping client for it."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from aiohttp import web

from tests.harness import Harness, pkce_pair
from tokensvc.http.server import app_runner
from tokensvc.login.app import login_app
from tokensvc.login.context import LoginContext

_HIDDEN = re.compile(r'type="hidden" name="([^"]+)" value="([^"]*)"')
_SECRET_FIELDS = ("interaction", "csrf")
_ALERT = re.compile(r'role="alert"[^>]*>([^<]*)<')


@dataclass
class Page:
    status: int
    headers: Any
    text: str

    @property
    def location(self) -> str:
        return str(self.headers.get("Location", ""))

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}

    @property
    def fields(self) -> dict[str, str]:
        """The hidden fields of the page's (first) form."""
        form = self.text.split("</form>", 1)[0]
        return {name: html.unescape(value) for name, value in _HIDDEN.findall(form)}

    @property
    def alert(self) -> str | None:
        found = _ALERT.search(self.text)
        return found.group(1) if found else None


@dataclass
class Browser:
    """One person's browser: its own cookie jar, never following redirects."""

    base: str
    http: aiohttp.ClientSession
    remember: Any = None
    history: list[Page] = field(default_factory=list)

    async def get(self, path: str, **params: Any) -> Page:
        query = urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        async with self.http.get(url, allow_redirects=False) as resp:
            page = Page(resp.status, resp.headers, await resp.text())
        self._track(page)
        return page

    async def post(
        self, path: str, data: dict[str, str], headers: dict[str, str] | None = None
    ) -> Page:
        async with self.http.post(
            self.base + path, data=data, allow_redirects=False, headers=headers
        ) as resp:
            page = Page(resp.status, resp.headers, await resp.text())
        self._track(page)
        return page

    def _track(self, page: Page) -> None:
        self.history.append(page)
        if self.remember is not None:
            fields = page.fields
            self.remember(*(fields.get(n) for n in _SECRET_FIELDS), page.query.get("code"))

    async def sign_in(
        self, page: Page, username: str, password: str, headers: dict[str, str] | None = None
    ) -> Page:
        if self.remember is not None:
            self.remember(password)
        return await self.post(
            "/login", {**page.fields, "username": username, "password": password}, headers
        )

    async def close(self) -> None:
        await self.http.close()


@dataclass
class Login:
    ctx: LoginContext
    url: str
    runner: web.AppRunner
    token: Harness
    browsers: list[Browser] = field(default_factory=list)
    verifiers: list[str] = field(default_factory=list)

    def browser(self) -> Browser:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, as a browser keeps them
        b = Browser(self.url, aiohttp.ClientSession(cookie_jar=jar), self.token.remember)
        self.browsers.append(b)
        return b

    async def authorize(self, client: Any, **overrides: Any) -> tuple[Browser, Page]:
        """A new browser's GET /authorize of `authorize_params(client, **overrides)`: the
        browser, and the page it got (the login form, unless the request is refused)."""
        browser = self.browser()
        page = await browser.get("/authorize", **self.authorize_params(client, **overrides))
        return browser, page

    def authorize_params(self, client: Any, **overrides: Any) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        self.token.remember(verifier)
        self.verifiers.append(verifier)
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": "openid profile email",
            "state": "st-123",
            "nonce": "nonce-456",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return params

    async def close(self) -> None:
        for b in self.browsers:
            await b.close()
        await self.runner.cleanup()


async def start_login(ctx: LoginContext, token: Harness) -> Login:
    runner = app_runner(login_app(ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return Login(ctx, f"http://{host}:{port}", runner, token)
