"""Fixtures of the browser tests (`test_browser_*.py`): per module, a database, the whole
stack on loopback (`tests/e2e/browser.py`) and one Chromium; per test, a fresh desktop-sized
browser context (its own cookies)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ViewportSize, async_playwright

from tests.conftest import LogSink
from tests.e2e.browser import ARTIFACTS, STEP_TIMEOUT_MS, Stack, launch_chromium, open_stack
from tests.servers import create_database, run_sync
from tokensvc.signing.keyfile import generate_jwks
from tokensvc.signing.keys import KeySet, keyset_from_jwks
from tokensvc.storage.migrate import migrate

DESKTOP = ViewportSize(width=1280, height=800)
MOBILE = ViewportSize(width=375, height=740)


@pytest.fixture(scope="module")
def database_url(postgres_admin_url: str, request: pytest.FixtureRequest) -> str:
    url = create_database(postgres_admin_url, "e2e_" + request.module.__name__.rsplit(".")[-1])
    run_sync(lambda: migrate(url))
    return url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(redis_url: str, database_url: str, log_sink: LogSink) -> AsyncIterator[Stack]:
    keys: KeySet = keyset_from_jwks(generate_jwks("ES256"))
    mark = log_sink.mark()
    async with open_stack(redis_url, database_url, keys) as opened:
        yield opened
    # Passwords, codes, tokens, verifiers, client secrets, cookies: none in any log line.
    log_sink.assert_clean(mark, opened.harness.secrets)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)  # screenshots to look at; git-ignored
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        await ctx.close()
