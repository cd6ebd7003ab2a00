"""The one middleware every listener runs: errors to JSON, and one log line per request.

Handlers add `client_id`, `grant_type` and the like to `request[LOG_FIELDS]`; nothing else of the
request (query, body, headers) is logged, so no code, token or secret can reach a log line.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from tokensvc.errors import InvalidRequest, OAuthError, ServerError, StoreUnavailable
from tokensvc.errors import TemporarilyUnavailable as Unavailable
from tokensvc.http.responses import NO_STORE, json_response, oauth_error

log = structlog.get_logger("tokensvc.request")

# Fields of the request's canonical log line, filled in by the handlers.
LOG_FIELDS = web.RequestKey("log", dict)


def _http_error(exc: web.HTTPException) -> web.Response:
    headers = dict(NO_STORE)
    if "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    if exc.status == 413:
        body = {"error": InvalidRequest.error, "error_description": "The body is too large."}
    else:
        body = {"error": exc.reason.lower().replace(" ", "_"), "error_description": exc.reason}
    return json_response(body, exc.status, headers)


@web.middleware
async def canonical(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    fields: dict[str, Any] = {}
    request[LOG_FIELDS] = fields
    try:
        response = await handler(request)
    except OAuthError as exc:
        fields["error"] = exc.error
        if exc.detail:
            fields["detail"] = exc.detail
        response = oauth_error(exc)
    except StoreUnavailable as exc:
        fields["error"] = Unavailable.error
        fields["store"] = exc.store
        response = oauth_error(Unavailable())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_error(exc)
    except Exception:
        log.exception("unhandled", method=request.method, path=request.path)
        fields["error"] = ServerError.error
        response = oauth_error(ServerError())
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        **fields,
    )
    return response
