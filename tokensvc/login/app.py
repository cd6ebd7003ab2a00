"""The login front-end application and the stores it opens (`tokensvc serve login`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from tokensvc.config import Settings
from tokensvc.errors import InvalidRequest, StoreUnavailable
from tokensvc.http.forms import TooManyParameters
from tokensvc.http.middleware import LOG_FIELDS, abandon_body, canonical
from tokensvc.limits.failures import FailureLimiter, MemoryFailureLimiter
from tokensvc.login import account, signout, views
from tokensvc.login.changes import ChangeFollower
from tokensvc.login.context import CONTEXT, LoginContext
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.storage.consents import MemoryConsents
from tokensvc.storage.ephemeral import MemoryEphemeral
from tokensvc.storage.memory import MemoryUsers
from tokensvc.storage.protocols import ConsentStore, EphemeralStore, UserStore
from tokensvc.tracing import span_middleware

if TYPE_CHECKING:
    from tokensvc.tracing.otel import Tracing

STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    # No scripts at all; styles only from here; never framed (clickjacking on the forms).
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages a person can read, and the security headers on every response."""
    try:
        response = await handler(request)
    except StoreUnavailable as exc:
        request[LOG_FIELDS].update(error="temporarily_unavailable", store=exc.store)
        response = views.unavailable()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = views.error_page(exc.reason, "That page does not exist here.", exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except TooManyParameters:
        request[LOG_FIELDS].update(error="invalid_request")
        response = views.error_page("Request Entity Too Large", "The form is too large.", 413)
    except InvalidRequest:  # not UTF-8 form data, NUL, a field twice (http.forms)
        request[LOG_FIELDS].update(error="invalid_request")
        response = views.error_page("Bad Request", "The form could not be read.", 400)
    except RequestPayloadError:  # a form body that does not decode (bad gzip, chunking)
        response = views.error_page("Bad Request", "The form could not be read.", 400)
        abandon_body(request, response)
    response.headers.update(SECURITY_HEADERS)
    return response


def login_app(ctx: LoginContext) -> web.Application:
    app = web.Application(
        middlewares=[*span_middleware(ctx.tracing), canonical, html_errors],
        client_max_size=64 * 1024,
    )
    app[CONTEXT] = ctx
    app.router.add_get("/authorize", views.authorize)
    app.router.add_post("/login", views.login)
    app.router.add_post("/consent", views.consent)
    app.router.add_route("GET", "/logout", signout.logout)
    app.router.add_route("POST", "/logout", signout.logout)
    app.router.add_post("/logout/confirm", signout.confirm)
    app.router.add_get("/account", account.account)
    app.router.add_post("/account/remove", account.remove)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_static("/static", STATIC, append_version=False)
    return app


@asynccontextmanager
async def open_login_context(
    settings: Settings, users: UserStore | None = None, tracing: Tracing | None = None
) -> AsyncIterator[LoginContext]:
    """Open what the front-end needs: users and consents in Postgres (`TOKENSVC_DATABASE_URL`),
    sessions and failure counters in Redis (`TOKENSVC_REDIS_URL`), memory otherwise."""
    async with AsyncExitStack() as stack:
        consents: ConsentStore = MemoryConsents()
        ephemeral: EphemeralStore = MemoryEphemeral()
        limiter: FailureLimiter = MemoryFailureLimiter()
        if settings.redis_url:
            from tokensvc.limits.failures import RedisFailureLimiter
            from tokensvc.redis_client import connect
            from tokensvc.storage.ephemeral import RedisEphemeral

            redis = connect(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            ephemeral = RedisEphemeral(redis, "login")
            limiter = RedisFailureLimiter(redis)
        if settings.database_url and users is None:
            from tokensvc.storage.consents import PostgresConsents
            from tokensvc.storage.postgres import Postgres

            # Connections open on demand: the service starts (not ready) while the
            # database is still down, and recovers by itself when it comes up.
            pg = await Postgres.connect(settings.database_url, min_size=0, max_size=20)
            stack.push_async_callback(pg.close)
            users, consents = pg.users, PostgresConsents(pg)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        assert settings.internal_token is not None
        api = TokenAPI(settings.token_internal_url, settings.internal_token, http, tracing=tracing)
        # Changed clients forgotten within a second (tokensvc.login.changes); stopped before
        # the HTTP session closes.
        follower = ChangeFollower(api)
        follower.start()
        stack.push_async_callback(follower.close)
        yield LoginContext(
            settings=settings,
            users=users or MemoryUsers(),
            consents=consents,
            ephemeral=ephemeral,
            limiter=limiter,
            api=api,
            tracing=tracing,
        )
