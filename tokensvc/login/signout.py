"""Signing out (OIDC RP-Initiated Logout 1.0): `GET|POST /logout` and its confirmation.

The request is checked before anything happens: an `id_token_hint` must verify against the
token service's published keys (`tokensvc.login.idtokenhint`; an expired one still
identifies), a `client_id` sent with it must be its audience, and a
`post_logout_redirect_uri` must be one the client registered, character for character;
anything else is an error page, never a redirect (§3: no open redirector).

A hint that names the browser's current session proves the request comes from that
session's application, so the session ends at once; otherwise the person confirms, with a
form bound to the session (`sessions.session_csrf`), so that no other site can sign them out.
Ending a session asks the token service first (`/internal/sessions/end`: online grants
revoked, back-channel logouts queued and delivered in the background, so a slow relying
party never holds the redirect); only when it answered is the browser session forgotten.
Then the person goes to the redirect URI with `state`, or sees a signed-out page.

`ui_locales` is accepted; the pages exist in English only, which every list of locales
falls back to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping

from tokensvc.http.forms import read_form
from tokensvc.http.responses import NO_STORE
from tokensvc.login import pages
from tokensvc.login.authorize import redirect_url
from tokensvc.login.context import CONTEXT, LoginContext
from tokensvc.login.idtokenhint import Hint, InvalidHint
from tokensvc.login.sessions import BrowserSession, same_secret, session_csrf
from tokensvc.login.tokenapi import ClientInfo, TokenServiceUnavailable
from tokensvc.login.views import MAX_FORM_FIELDS, csrf_refused, error_page, html, unavailable

PARAMETERS = (
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
    "logout_hint",
)
# What the confirmation form carries back (the hint itself is not needed any more).
CARRIED = ("client_id", "post_logout_redirect_uri", "state")


class UnsafeLogout(Exception):
    """A sign-out request that may not redirect anywhere; the message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    client: ClientInfo | None
    redirect_uri: str | None  # registered by `client`, exactly
    state: str | None
    hint: Hint | None

    def carried(self) -> dict[str, str | None]:
        return {
            "client_id": self.client.client_id if self.client else None,
            "post_logout_redirect_uri": self.redirect_uri,
            "state": self.state,
        }

    def names_session(self, session: BrowserSession) -> bool:
        return (
            self.hint is not None
            and self.hint.sid is not None
            and self.hint.sub == session.sub
            and same_secret(self.hint.sid, session.sid)
        )


async def parse(ctx: LoginContext, params: Mapping[str, str] | MultiMapping[str]) -> LogoutRequest:
    """The checked request; `UnsafeLogout` for one that may not redirect anywhere."""
    if isinstance(params, MultiMapping):  # a query; a form has no name twice (`read_form`)
        for name in PARAMETERS:
            if len(params.getall(name, ())) > 1:
                raise UnsafeLogout(f"The sign-out link gives {name} more than once.")
    raw_hint = params.get("id_token_hint") or None
    try:
        hint = await ctx.hints.verify(raw_hint) if raw_hint else None
    except InvalidHint as exc:
        raise UnsafeLogout(str(exc)) from None
    client_id = params.get("client_id") or None
    if client_id is not None and hint is not None and not hint.names(client_id):
        raise UnsafeLogout("The id_token_hint was issued to another application.")
    client_id = client_id or (hint.client_id if hint else None)
    # Fresh: a redirect URI removed a moment ago must not be followed.
    client = await ctx.api.client(client_id, fresh=True) if client_id else None
    if client is None and params.get("client_id"):
        raise UnsafeLogout("The application that sent you here is not registered.")
    redirect_uri = params.get("post_logout_redirect_uri") or None
    if redirect_uri is not None:
        if client is None:
            raise UnsafeLogout(
                "The sign-out link names no application (client_id or id_token_hint), "
                "so it cannot send you back."
            )
        if redirect_uri not in client.post_logout_redirect_uris:
            raise UnsafeLogout(
                "The post_logout_redirect_uri is not registered for this application."
            )
    return LogoutRequest(client, redirect_uri, params.get("state") or None, hint)


async def _checked(
    ctx: LoginContext, params: Mapping[str, str] | MultiMapping[str]
) -> LogoutRequest | web.Response:
    """The checked request, or the page that says why there is none."""
    try:
        return await parse(ctx, params)
    except UnsafeLogout as exc:
        return error_page("This sign-out link is not valid", exc.message, 400)
    except TokenServiceUnavailable:
        return unavailable()


def _finish(ctx: LoginContext, lreq: LogoutRequest, cookie: str | None) -> web.Response:
    if lreq.redirect_uri is not None:
        location = redirect_url(lreq.redirect_uri, {"state": lreq.state})
        response = web.Response(status=302, headers={"Location": location, **NO_STORE})
    else:
        response = html(pages.signed_out_page())
    if cookie is not None:
        response.del_cookie(
            ctx.cookies.session,
            path="/",
            secure=ctx.cookies.secure,
            httponly=True,
            samesite="Lax",
        )
    return response


async def _sign_out(
    ctx: LoginContext, cookie: str | None, session: BrowserSession, lreq: LogoutRequest
) -> web.Response:
    try:
        await ctx.api.end_session(session.sub, session.sid)
    except TokenServiceUnavailable:
        return unavailable()  # the session stays: signing out again can still end it all
    await ctx.sessions.end(cookie)
    return _finish(ctx, lreq, cookie)


async def logout(request: web.Request) -> web.Response:
    """`GET|POST /logout` (RP-Initiated Logout §2, §3)."""
    ctx = request.app[CONTEXT]
    get = request.method == "GET"
    lreq = await _checked(ctx, request.query if get else await read_form(request, MAX_FORM_FIELDS))
    if isinstance(lreq, web.Response):
        return lreq
    cookie = request.cookies.get(ctx.cookies.session)
    session = await ctx.sessions.get(cookie)
    if session is None:
        # No session in this browser (it expired, or ended elsewhere). The hint's session may
        # still hold grants at the token service; its holder (the relying party) asks to end it.
        if lreq.hint is not None and lreq.hint.sid is not None:
            try:
                await ctx.api.end_session(lreq.hint.sub, lreq.hint.sid)
            except TokenServiceUnavailable:
                return unavailable()
        return _finish(ctx, lreq, cookie)
    if lreq.names_session(session):
        return await _sign_out(ctx, cookie, session, lreq)
    assert cookie is not None
    page = pages.logout_page(
        client_name=lreq.client.name if lreq.client else None,
        csrf=session_csrf(cookie),
        request=lreq.carried(),
    )
    return html(page)


async def confirm(request: web.Request) -> web.Response:
    """`POST /logout/confirm`: the person's answer to the confirmation (or the account page's
    sign-out button)."""
    ctx = request.app[CONTEXT]
    form = await read_form(request, MAX_FORM_FIELDS)
    lreq = await _checked(ctx, {k: v for k, v in form.items() if k in CARRIED})
    if isinstance(lreq, web.Response):
        return lreq
    cookie = request.cookies.get(ctx.cookies.session)
    session = await ctx.sessions.get(cookie)
    if session is None:  # signed out meanwhile (another tab): nothing left to end here
        return _finish(ctx, lreq, cookie)
    assert cookie is not None
    if not same_secret(form.get("csrf"), session_csrf(cookie)):
        return csrf_refused()
    if form.get("decision") != "logout":
        return html(pages.still_signed_in_page())
    return await _sign_out(ctx, cookie, session, lreq)
