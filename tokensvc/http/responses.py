"""JSON responses, including RFC 6749 §5.2 error bodies."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tokensvc.errors import InvalidClient, OAuthError, SlowDown

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def oauth_error(exc: OAuthError) -> web.Response:
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidClient):
        # RFC 7235 §3.1: a 401 names the scheme the client may retry with.
        headers["WWW-Authenticate"] = 'Basic realm="tokensvc", charset="UTF-8"'
    if exc.status == 503:
        headers["Retry-After"] = "1"
    elif isinstance(exc, SlowDown):
        headers["Retry-After"] = str(exc.retry_after)
    headers.update(exc.headers)
    return json_response(
        {"error": exc.error, "error_description": exc.description}, exc.status, headers
    )
