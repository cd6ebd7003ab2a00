"""The login front-end's endpoints: `/authorize`, the sign-in and consent forms, health.

It authenticates a person, asks for consent where the client needs it, and then only asks
the token service's internal API for a code. It never sees a token or a signing key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tokensvc import passwords
from tokensvc.claims import released_claims
from tokensvc.forwarded import client_address
from tokensvc.http.forms import read_form
from tokensvc.http.responses import NO_STORE
from tokensvc.http.server import LIFECYCLE
from tokensvc.limits.failures import PER_ADDRESS, PER_USERNAME
from tokensvc.login import pages
from tokensvc.login.authorize import (
    AuthorizationRequest,
    AuthorizeError,
    UnsafeRequest,
    parse,
    redirect_url,
)
from tokensvc.login.context import CONTEXT, LoginContext
from tokensvc.login.sessions import BrowserSession, Interaction
from tokensvc.login.tokenapi import ClientInfo, CodeRefused, TokenServiceUnavailable
from tokensvc.models import User

GENERIC_FAILURE = "Incorrect username or password."
# Our forms have four fields; the limit only bounds the work a hostile body can cause.
MAX_FORM_FIELDS = 1000


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=NO_STORE)


def error_page(title: str, message: str, status: int) -> web.Response:
    return html(pages.error_page(title, message), status)


def csrf_refused() -> web.Response:
    return error_page("Request refused", "The form could not be verified (CSRF check failed).", 403)


def expired() -> web.Response:
    return error_page(
        "This sign-in has expired", "Start again from the application you came from.", 400
    )


def client_gone() -> web.Response:
    """The application was removed (or no longer registers the redirect URI) while the person
    was signing in: an error page, never a redirect to an address nobody vouches for now."""
    return error_page(
        "This application is no longer available",
        "It was removed while you were signing in. Start again from the application.",
        400,
    )


async def _still_registered(ctx: LoginContext, areq: AuthorizationRequest) -> bool:
    """Whether the client still exists and still registers the request's redirect URI (RFC
    6749 §4.1.2.1: errors go to the redirect URI only while it is a verified one)."""
    client = await ctx.api.client(areq.client_id, fresh=True)
    return client is not None and areq.redirect_uri in client.redirect_uris


def unavailable() -> web.Response:
    return error_page(
        "Temporarily unavailable",
        "Sign-in is briefly unavailable. Please try again in a moment.",
        503,
    )


def _set_cookie(
    ctx: LoginContext,
    response: web.StreamResponse,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=ctx.cookies.secure,
    )


def _redirect_to(
    ctx: LoginContext, redirect_uri: str, state: str | None, **params: str | None
) -> web.Response:
    """RFC 6749 §4.1.2 and RFC 9207: the response goes back with `state` and `iss`."""
    location = redirect_url(redirect_uri, {**params, "state": state, "iss": ctx.settings.issuer})
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def _redirect(
    ctx: LoginContext, request: AuthorizationRequest, **params: str | None
) -> web.Response:
    return _redirect_to(ctx, request.redirect_uri, request.state, **params)


def _fresh_browser(ctx: LoginContext, response_cookies: dict[str, str]) -> str:
    """A new browser-binding value for a sign-in that starts now. Never the one the request
    brought: a cookie planted by a related domain (cookie tossing) must not become the value
    the sign-in is bound to. A sign-in started earlier in another tab is then refused, and that
    tab starts again."""
    cookie = ctx.new_value()
    response_cookies[ctx.cookies.browser] = cookie
    return cookie


def _needs_login(
    ctx: LoginContext, areq: AuthorizationRequest, session: BrowserSession | None, user: User | None
) -> bool:
    if session is None or user is None or "login" in areq.prompt:
        return True
    if areq.max_age is not None:
        return areq.max_age == 0 or ctx.clock() - session.auth_time > areq.max_age
    return False


async def _needs_consent(
    ctx: LoginContext, client: ClientInfo, areq: AuthorizationRequest, sub: str
) -> bool:
    if "consent" in areq.prompt:
        return True
    if not client.require_consent:
        return False
    granted = await ctx.consents.granted(sub, client.client_id)
    return not areq.consent_items <= granted


async def _issue_code(
    ctx: LoginContext, areq: AuthorizationRequest, user: User, session: BrowserSession
) -> web.Response:
    payload: dict[str, Any] = {
        "client_id": areq.client_id,
        "redirect_uri": areq.redirect_uri,
        "scope": areq.scope,
        "sub": user.sub,
        "auth_time": session.auth_time,
        "nonce": areq.nonce,
        "code_challenge": areq.code_challenge,
        "code_challenge_method": areq.code_challenge_method,
        "amr": list(session.amr),
        "sid": session.sid,
        "claims": released_claims(user, areq.scope),
        "resource": list(areq.resources) or None,
        "dpop_jkt": areq.dpop_jkt,
    }
    try:
        code = await ctx.api.mint_code({k: v for k, v in payload.items() if v is not None})
    except TokenServiceUnavailable:
        return unavailable()
    except CodeRefused as exc:
        if not await _still_registered(ctx, areq):
            return client_gone()
        return _redirect(ctx, areq, error=exc.error, error_description=exc.description)
    return _redirect(ctx, areq, code=code)


def _with_cookies(
    ctx: LoginContext, response: web.Response, cookies: dict[str, str]
) -> web.Response:
    for name, value in cookies.items():
        _set_cookie(ctx, response, name, value)
    return response


async def authorize(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        client, areq = await parse(request.query, ctx.api)
    except UnsafeRequest as exc:
        return error_page("This sign-in link is not valid", exc.message, exc.status)
    except AuthorizeError as exc:
        return _redirect_to(
            ctx, exc.redirect_uri, exc.state, error=exc.error, error_description=exc.description
        )
    except TokenServiceUnavailable:
        return unavailable()
    session = await ctx.sessions.get(request.cookies.get(ctx.cookies.session))
    user = await ctx.users.by_sub(session.sub) if session is not None else None
    cookies: dict[str, str] = {}
    if _needs_login(ctx, areq, session, user):
        if "none" in areq.prompt:
            return _redirect(
                ctx, areq, error="login_required", error_description="The user is not signed in."
            )
        browser = _fresh_browser(ctx, cookies)
        key, interaction = await ctx.interactions.begin(areq, client.name, browser)
        page = pages.login_page(client_name=client.name, interaction=key, csrf=interaction.csrf)
        return _with_cookies(ctx, html(page), cookies)
    assert session is not None and user is not None
    if await _needs_consent(ctx, client, areq, user.sub):
        if "none" in areq.prompt:
            return _redirect(
                ctx, areq, error="consent_required", error_description="The user has not consented."
            )
        key, interaction = await ctx.interactions.begin(
            areq, client.name, _fresh_browser(ctx, cookies), stage="consent", sub=user.sub
        )
        return _with_cookies(ctx, _consent(key, interaction), cookies)
    return _with_cookies(ctx, await _issue_code(ctx, areq, user, session), cookies)


def _consent(key: str, interaction: Interaction) -> web.Response:
    return html(
        pages.consent_page(
            client_name=interaction.client_name,
            scopes=interaction.request.scope.split(" "),
            apis=list(interaction.request.apis),
            interaction=key,
            csrf=interaction.csrf,
        )
    )


async def _checked_interaction(
    request: web.Request, form: Mapping[str, str], stage: str
) -> tuple[str, Interaction] | web.Response:
    """The form's interaction, if it exists, is at `stage`, belongs to this browser and the
    CSRF token matches; else the response to send (403 for a CSRF failure)."""
    ctx = request.app[CONTEXT]
    key = form.get("interaction")
    interaction = await ctx.interactions.get(key)
    if interaction is None:
        return expired()
    csrf = form.get("csrf")
    if interaction.stage != stage:  # e.g. the sign-in form resubmitted after consent showed
        return error_page(
            "This sign-in has moved on", "Start again from the application you came from.", 400
        )
    if not interaction.belongs_to(
        request.cookies.get(ctx.cookies.browser)
    ) or not interaction.csrf_matches(csrf):
        return csrf_refused()
    assert key is not None
    return key, interaction


async def login(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    form = await read_form(request, MAX_FORM_FIELDS)
    checked = await _checked_interaction(request, form, "login")
    if isinstance(checked, web.Response):
        return checked
    key, interaction = checked
    username = form.get("username", "").strip()
    password = form.get("password", "")

    def again(error: str, status: int) -> web.Response:
        return html(
            pages.login_page(
                client_name=interaction.client_name,
                interaction=key,
                csrf=interaction.csrf,
                username=username,
                error=error,
            ),
            status,
        )

    address = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", ()), ctx.proxies
    )
    checks = [(PER_USERNAME, username.casefold()), (PER_ADDRESS, address)]
    wait = await ctx.limiter.retry_after(checks)
    if wait > 0:
        return again(f"Too many failed attempts. Try again in {wait} s.", 429)
    user = await ctx.users.by_username(username) if username else None
    if not username or not password or not await passwords.verify(user, password):
        wait = await ctx.limiter.record_failure(checks)
        if wait > 0:
            return again(f"Too many failed attempts. Try again in {wait} s.", 429)
        return again(GENERIC_FAILURE, 401)
    assert user is not None
    await ctx.limiter.clear(checks[:1])
    await ctx.sessions.end(request.cookies.get(ctx.cookies.session))
    cookie, session = await ctx.sessions.start(user.sub, int(ctx.clock()))
    areq = interaction.request
    client = await ctx.api.client(areq.client_id)
    if client is None:
        response = error_page(
            "This sign-in link is not valid", "The application is no longer registered.", 400
        )
    elif await _needs_consent(ctx, client, areq, user.sub):
        moved = await ctx.interactions.advance(key, interaction, stage="consent", sub=user.sub)
        response = _consent(key, moved)
    elif await ctx.interactions.finish(key) is None:
        response = expired()
    else:
        response = await _issue_code(ctx, areq, user, session)
    _set_cookie(ctx, response, ctx.cookies.session, cookie, ctx.session_ttl)
    return response


async def consent(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    form = await read_form(request, MAX_FORM_FIELDS)
    checked = await _checked_interaction(request, form, "consent")
    if isinstance(checked, web.Response):
        return checked
    key, interaction = checked
    session = await ctx.sessions.get(request.cookies.get(ctx.cookies.session))
    user = await ctx.users.by_sub(session.sub) if session is not None else None
    if session is None or user is None or user.sub != interaction.sub:
        return error_page("Request refused", "Your session ended; start again.", 403)
    if await ctx.interactions.finish(key) is None:
        return expired()
    areq = interaction.request
    if not await _still_registered(ctx, areq):  # nor remember consent for a removed client
        return client_gone()
    if form.get("decision") != "allow":
        return _redirect(
            ctx, areq, error="access_denied", error_description="The user denied the request."
        )
    await ctx.consents.grant(user.sub, areq.client_id, areq.consent_items)
    return await _issue_code(ctx, areq, user, session)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    lifecycle = request.app.get(LIFECYCLE)
    if lifecycle is not None and lifecycle.draining:
        return web.json_response({"status": "draining"}, status=503)
    checks = await request.app[CONTEXT].readiness()
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
