"""The front-end's HTML: sign-in, consent and error pages. Plain forms, no JavaScript, one
stylesheet served by the service itself; every interpolated value is HTML-escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SCOPE_TEXT = {
    "openid": "Confirm who you are (your account identifier)",
    "profile": "Your name",
    "email": "Your email address",
    "offline_access": "Stay connected when you are not using it",
}


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


def consent_page(
    *, client_name: str, scopes: list[str], interaction: str, csrf: str, apis: Sequence[str] = ()
) -> str:
    """`apis`: the resources (RFC 8707) the tokens will be for, by name where they have one."""
    items = "\n".join(f"<li>{escape(SCOPE_TEXT.get(s, f'Access: {s}'))}</li>" for s in scopes)
    targets = (
        '\n<p class="lead">on your behalf at:</p>\n<ul class="apis">\n'
        + "\n".join(f"<li>{escape(api)}</li>" for api in apis)
        + "\n</ul>"
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
