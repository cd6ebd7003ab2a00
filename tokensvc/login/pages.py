"""The front-end's HTML: sign-in, consent, sign-out, account and error pages. Plain forms, no
JavaScript, one stylesheet served by the service itself; every interpolated value is
HTML-escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

SCOPE_TEXT = {
    "openid": "Confirm who you are (your account identifier)",
    "profile": "Your name",
    "email": "Your email address",
    "offline_access": "Stay connected when you are not using it",
}


def scope_order(scope: str) -> tuple[int, str]:
    """The order scopes are listed in: the OIDC ones as above, then the rest by name."""
    known = list(SCOPE_TEXT)
    return (known.index(scope) if scope in known else len(known), scope)


def _layout(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/login.css">
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def _alert(message: str | None) -> str:
    if not message:
        return ""
    return f'<p class="alert" role="alert" id="form-error">{escape(message)}</p>\n'


def _hidden(interaction: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="interaction" value="{escape(interaction)}">\n'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">\n'
    )


def login_page(
    *,
    client_name: str,
    interaction: str,
    csrf: str,
    username: str = "",
    error: str | None = None,
) -> str:
    described = ' aria-describedby="form-error"' if error else ""
    # After a failed attempt the username is filled in: the password is what to type next.
    user_focus, password_focus = ("", " autofocus") if username else (" autofocus", "")
    return _layout(
        f"Sign in to continue to {client_name}",
        f"""<h1>Sign in</h1>
<p class="lead">to continue to <span class="client">{escape(client_name)}</span></p>
{_alert(error)}<form method="post" action="/login" novalidate>
{_hidden(interaction, csrf)}<label for="username">Username</label>
<input id="username" name="username" type="text" value="{escape(username)}"
 autocomplete="username" autocapitalize="none" spellcheck="false" required{user_focus}{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required{password_focus}{described}>
<button type="submit">Sign in</button>
</form>""",
    )


def _fields(values: Mapping[str, str | None]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'
        for name, value in values.items()
        if value is not None
    )


def _scope_items(scopes: Sequence[str]) -> str:
    return "\n".join(f"<li>{escape(SCOPE_TEXT.get(s, f'Access: {s}'))}</li>" for s in scopes)


def _api_items(apis: Sequence[str]) -> str:
    return "\n".join(f"<li>{escape(api)}</li>" for api in apis)


def consent_page(
    *, client_name: str, scopes: list[str], interaction: str, csrf: str, apis: Sequence[str] = ()
) -> str:
    """`apis`: the resources (RFC 8707) the tokens will be for, by name where they have one."""
    items = _scope_items(scopes)
    targets = (
        f'\n<p class="lead">on your behalf at:</p>\n<ul class="apis">\n{_api_items(apis)}\n</ul>'
        if apis
        else ""
    )
    return _layout(
        f"Allow {client_name}?",
        f"""<h1>Allow access?</h1>
<p class="lead"><span class="client">{escape(client_name)}</span> would like to:</p>
<ul class="scopes">
{items}
</ul>{targets}
<form method="post" action="/consent">
{_hidden(interaction, csrf)}<div class="actions">
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
<button type="submit" name="decision" value="allow">Allow</button>
</div>
</form>
<p class="fine">We remember an Allow for this app and these permissions.</p>""",
    )


def logout_page(*, client_name: str | None, csrf: str, request: Mapping[str, str | None]) -> str:
    """OIDC RP-Initiated Logout 1.0 §2: the person confirms before their session ends (the
    request did not prove it came from the session's own application). `request`: the
    validated parameters, sent back with the answer and checked again."""
    asked_by = (
        f'<p class="lead"><span class="client">{escape(client_name)}</span> asked to sign you '
        "out.</p>"
        if client_name
        else '<p class="lead">You will be signed out of every app you signed in to here.</p>'
    )
    return _layout(
        "Sign out?",
        f"""<h1>Sign out?</h1>
{asked_by}
<form method="post" action="/logout/confirm">
{_fields({**request, "csrf": csrf})}<div class="actions">
<button type="submit" name="decision" value="stay" class="secondary">Stay signed in</button>
<button type="submit" name="decision" value="logout">Sign out</button>
</div>
</form>""",
    )


def signed_out_page() -> str:
    return _layout(
        "Signed out",
        """<h1>You are signed out</h1>
<p class="lead">Apps you signed in to here have been told. You can close this window.</p>""",
    )


def still_signed_in_page() -> str:
    return _layout(
        "Still signed in",
        """<h1>You are still signed in</h1>
<p class="lead">Nothing changed. You can close this window or go back to the app.</p>""",
    )


@dataclass(frozen=True, slots=True)
class AppAccess:
    """One app on the account page: what the person let it have."""

    client_id: str
    name: str
    scopes: tuple[str, ...]
    apis: tuple[str, ...]


def _app_card(app: AppAccess, csrf: str) -> str:
    apis = (
        '\n<p class="fine">On your behalf at:</p>\n'
        f'<ul class="apis">\n{_api_items(app.apis)}\n</ul>'
        if app.apis
        else ""
    )
    return f"""<li class="app">
<h2>{escape(app.name)}</h2>
<ul class="scopes">
{_scope_items(app.scopes)}
</ul>{apis}
<form method="post" action="/account/remove">
{_fields({"client_id": app.client_id, "csrf": csrf})}<button type="submit" class="secondary danger"
 aria-label="Remove access for {escape(app.name)}">Remove access</button>
</form>
</li>"""


def account_page(*, person: str, apps: Sequence[AppAccess], csrf: str) -> str:
    listed = (
        '<ul class="apps">\n' + "\n".join(_app_card(app, csrf) for app in apps) + "\n</ul>"
        if apps
        else '<p class="lead" id="no-apps">No app has access to your account.</p>'
    )
    return _layout(
        "Your account",
        f"""<h1>Your account</h1>
<p class="lead">Signed in as <span class="client">{escape(person)}</span></p>
<h2 class="section">Apps with access</h2>
{listed}
<form method="post" action="/logout/confirm">
{_fields({"csrf": csrf})}<button type="submit" name="decision" value="logout"
 class="secondary">Sign out</button>
</form>""",
    )


def error_page(title: str, message: str) -> str:
    return _layout(
        title,
        f"""<h1>{escape(title)}</h1>
<p class="lead">{escape(message)}</p>
<p class="fine">Go back to the application and try again. If this keeps happening, contact
its support.</p>""",
    )


def callback_page(code: str, curl: str) -> str:
    """`tokensvc dev` only: where the demo client lands, showing how to redeem the code."""
    return _layout(
        "Signed in — tokensvc dev",
        f"""<h1>Signed in</h1>
<p class="lead">The demo client received an authorization code. Exchange it within its
lifetime:</p>
<pre>{escape(curl)}</pre>
<p class="fine">Code: <code>{escape(code)}</code></p>""",
    )
