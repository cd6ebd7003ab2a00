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
from aiohttp.web_protocol import RequestPayloadError

from tokensvc import logs
from tokensvc.errors import InvalidClient, InvalidRequest, OAuthError, ServerError, StoreUnavailable
from tokensvc.errors import TemporarilyUnavailable as Unavailable
from tokensvc.http.responses import NO_STORE, json_response, oauth_error
from tokensvc.http.server import close_while_draining
from tokensvc.metrics import Metrics
from tokensvc.tracing import route_template

log = structlog.get_logger("tokensvc.request")

# Fields of the request's canonical log line, filled in by the handlers.
LOG_FIELDS = web.RequestKey("log", dict)
# The application's metrics, when it exports any.
METRICS = web.AppKey("metrics", Metrics)


def _http_error(exc: web.HTTPException) -> web.Response:
    headers = dict(NO_STORE)
    if "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    if exc.status == 413:
        body = {"error": InvalidRequest.error, "error_description": "The body is too large."}
    else:
        body = {"error": exc.reason.lower().replace(" ", "_"), "error_description": exc.reason}
    return json_response(body, exc.status, headers)


def abandon_body(request: web.Request, response: web.StreamResponse) -> None:
    """A body that cannot be decoded (a broken gzip or deflate stream, bad chunking): the
    connection closes after the response, since what follows on it is not a request anyone
    can trust, and the unread rest is not drained (aiohttp would log a traceback trying)."""
    request.content.feed_eof()
    response.force_close()


@web.middleware
async def canonical(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    fields: dict[str, Any] = {}
    request[LOG_FIELDS] = fields
    try:
        response = await handler(request)
    except OAuthError as exc:
        fields["error"] = exc.error
        if isinstance(exc, InvalidClient) and exc.client_id is not None:
            fields["client_id"] = exc.client_id
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
    except RequestPayloadError:
        fields["error"] = InvalidRequest.error
        response = oauth_error(InvalidRequest("The body could not be decoded."))
        abandon_body(request, response)
    except Exception as exc:
        if _client_went_away(request, exc):  # not a server error: 499, no traceback
            log.info("client closed the connection", method=request.method, path=_endpoint(request))
            response = web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
            response.force_close()  # never sent: nobody is there to read it
        else:
            log.exception("unhandled", method=request.method, path=_endpoint(request))
            fields["error"] = ServerError.error
            response = oauth_error(ServerError())
    close_while_draining(request, response)
    elapsed = time.perf_counter() - started
    endpoint = _endpoint(request)
    metrics = request.app.get(METRICS)
    if metrics is not None:
        _observe(metrics, endpoint, request.method, response.status, elapsed, fields)
    fields["method"] = request.method
    fields["path"] = endpoint
    fields["status"] = response.status
    fields["duration_ms"] = round(elapsed * 1000, 3)
    logs.request_line(fields)
    return response


# nginx's "client closed request": the status of a request whose client went away mid-body, in
# the request line and `tokensvc_http_requests_total`, apart from the 5xx an SRE alerts on.
CLIENT_CLOSED = 499


def _client_went_away(request: web.Request, exc: Exception) -> bool:
    """Whether `exc` is the connection's loss surfacing through the request's body: when the
    peer closes or resets the connection mid-body, aiohttp sets the `ConnectionResetError` it
    lost it with on the body stream (`RequestHandler.connection_lost`), and `read()`, `post()`
    or `json()` raise that very object. Any other error, a store's reset connection or the
    login front-end's call to the internal API included, is still a server error."""
    return isinstance(exc, ConnectionResetError) and request.content.exception() is exc


def _endpoint(request: web.Request) -> str:
    """The route template (`/internal/clients/{client_id}`), never the path as sent: a path is
    whatever the caller typed, and a log line must not carry what someone pasted into it."""
    return route_template(request) or "unmatched"


def _observe(
    metrics: Metrics,
    endpoint: str,
    method: str,
    status: int,
    elapsed: float,
    fields: dict[str, Any],
) -> None:
    counter, histogram = metrics.per_request(endpoint, method, status)
    counter.inc()
    histogram.observe(elapsed)
    error = fields.get("error")
    if error is not None:
        metrics.errors.labels(endpoint, error).inc()
        if error == "invalid_client":
            metrics.invalid_client.labels(fields.get("client_id", "unknown")).inc()
        elif "limit" in fields:
            metrics.rate_limited.labels(fields["client_id"], fields["limit"]).inc()
    elif status == 200 and endpoint == "/token":
        metrics.issued_by(fields["grant_type"], fields["client_id"]).inc()
