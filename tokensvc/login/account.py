"""`/account`: the apps a signed-in person has let in, and taking that access back.

An app is listed when the person consented to it (the front-end's consent store) or holds
a live grant of theirs (the token service, `/internal/access/list`): a client that needs no
consent screen still shows up once it has a grant. Each shows the scopes and the APIs
(RFC 8707 resources, by name) it was given. "Remove access" (a form bound to the session,
`sessions.session_csrf`) revokes every grant of that app at the token service, refresh and
access tokens with them (RFC 7009 §2.1), and then forgets the consent, so that the app
has to ask again; revoking first means a failure half-way leaves nothing half-removed that
a retry would not finish.
"""

from __future__ import annotations

from aiohttp import web

from tokensvc.http.forms import read_form
from tokensvc.http.responses import NO_STORE
from tokensvc.login import pages
from tokensvc.login.context import CONTEXT, LoginContext
from tokensvc.login.sessions import same_secret, session_csrf
from tokensvc.login.tokenapi import TokenServiceUnavailable
from tokensvc.login.views import MAX_FORM_FIELDS, csrf_refused, error_page, html, unavailable

RESOURCE_MARK = '"'  # how consent items name a resource (AuthorizationRequest.consent_items)


def _not_signed_in() -> web.Response:
    return error_page(
        "You are not signed in",
        "Sign in from one of your apps; this page then shows the apps you have let in.",
        401,
    )


async def _apps(ctx: LoginContext, sub: str) -> list[pages.AppAccess]:
    scopes: dict[str, set[str]] = {}
    resources: dict[str, set[str]] = {}
    for grant in await ctx.api.person_grants(sub):
        client_id = str(grant["client_id"])
        scopes.setdefault(client_id, set()).update(str(grant["scope"]).split())
        resources.setdefault(client_id, set()).update(map(str, grant["resources"]))
    for client_id, items in (await ctx.consents.of_person(sub)).items():
        scopes.setdefault(client_id, set()).update(
            i for i in items if not i.startswith(RESOURCE_MARK)
        )
        resources.setdefault(client_id, set()).update(
            i[1:] for i in items if i.startswith(RESOURCE_MARK)
        )
    apps = []
    for client_id, granted in scopes.items():
        client = await ctx.api.client(client_id)
        if client is None:  # removed: its grants and consents went with it
            continue
        apis = tuple(client.api_label(r) for r in sorted(resources.get(client_id, ())))
        apps.append(
            pages.AppAccess(
                client_id, client.name, tuple(sorted(granted, key=pages.scope_order)), apis
            )
        )
    return sorted(apps, key=lambda app: (app.name.casefold(), app.client_id))


async def account(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    cookie = request.cookies.get(ctx.cookies.session)
    session = await ctx.sessions.get(cookie)
    user = await ctx.users.by_sub(session.sub) if session is not None else None
    if cookie is None or session is None or user is None:
        return _not_signed_in()
    try:
        apps = await _apps(ctx, user.sub)
    except TokenServiceUnavailable:
        return unavailable()
    person = user.name or user.username
    return html(pages.account_page(person=person, apps=apps, csrf=session_csrf(cookie)))


async def remove(request: web.Request) -> web.Response:
    """`POST /account/remove {client_id, csrf}`, then back to the account page (303)."""
    ctx = request.app[CONTEXT]
    form = await read_form(request, MAX_FORM_FIELDS)
    cookie = request.cookies.get(ctx.cookies.session)
    session = await ctx.sessions.get(cookie)
    if cookie is None or session is None:
        return _not_signed_in()
    if not same_secret(form.get("csrf"), session_csrf(cookie)):
        return csrf_refused()
    client_id = form.get("client_id")
    if not client_id:
        return error_page("Bad Request", "The form names no app.", 400)
    try:
        await ctx.api.revoke_access(session.sub, client_id)
    except TokenServiceUnavailable:
        return unavailable()
    await ctx.consents.withdraw(session.sub, client_id)
    return web.Response(status=303, headers={"Location": "/account", **NO_STORE})
