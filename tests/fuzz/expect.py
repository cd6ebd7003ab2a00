"""What every reply to hostile input must look like: never a 5xx, always a well-formed error.

The error vocabularies are RFC 6749 §5.2 (+ `slow_down`, RFC 8628 §3.5, for the abuse limits,
and RFC 9449's `invalid_dpop_proof` and `use_dpop_nonce`) at the client-authenticated
endpoints, the error middleware's codes for routing failures (`method_not_allowed`,
`not_found`), and the internal API's own `unauthorized` and `not_found`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.fuzz.strategies import Reply

TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",  # RFC 8707 §2
        "slow_down",
        "invalid_dpop_proof",  # RFC 9449 §5
        "use_dpop_nonce",  # RFC 9449 §8
    }
)
ROUTING_ERRORS = frozenset({"method_not_allowed", "not_found"})
INTERNAL_ERRORS = frozenset(
    {
        "unauthorized",
        "invalid_request",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_target",  # /internal/codes with a resource (RFC 8707)
        "not_found",
        "method_not_allowed",
    }
)
# RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6
AUTHORIZE_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "invalid_target",
        "server_error",
        "temporarily_unavailable",
        "login_required",
        "consent_required",
        "interaction_required",
        "request_not_supported",
    }
)
# The status each public error code travels with; the rest are 400 (413: a body too large).
STATUS_OF = {
    "invalid_client": 401,
    "slow_down": 429,
    "method_not_allowed": 405,
    "not_found": 404,
    "unauthorized": 401,
}
# The internal API refuses an unknown client in a mint request as a bad request (SPEC: 400);
# a 401 there only ever means the bearer.
INTERNAL_STATUS_OF = {**STATUS_OF, "invalid_client": 400}


def json_body(reply: Reply) -> Any:
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply
    return orjson.loads(reply.body)


def error_reply(
    reply: Reply,
    vocabulary: frozenset[str],
    *,
    no_store: bool = True,
    statuses: dict[str, int] | None = None,
) -> str:
    """A well-formed error: 4xx, a JSON object with a string `error` from `vocabulary` and a
    string `error_description`, and the headers its status calls for. Returns the code."""
    assert 400 <= reply.status < 500, reply
    if reply.method == "HEAD":  # no body: the status and its headers say it all
        if reply.status == 401:  # the internal listener checks its bearer first
            assert reply.headers.get("WWW-Authenticate"), reply
            return "unauthorized"
        assert reply.status == 405 and "Allow" in reply.headers, reply
        return "method_not_allowed"
    body = json_body(reply)
    assert isinstance(body, dict), reply
    error = body.get("error")
    assert isinstance(error, str) and error in vocabulary, reply
    assert isinstance(body.get("error_description"), str), reply
    statuses = STATUS_OF if statuses is None else statuses
    if error in statuses:
        assert reply.status == statuses[error], reply
    else:
        assert reply.status in (400, 413) if error == "invalid_request" else reply.status == 400
    if no_store:
        assert reply.headers.get("Cache-Control") == "no-store", reply
    if reply.status == 401:
        assert reply.headers.get("WWW-Authenticate"), reply
    if reply.status == 429:
        assert reply.headers["Retry-After"].isdigit() and int(reply.headers["Retry-After"]) >= 1
    if reply.status == 405:
        assert "POST" in reply.headers["Allow"] or "GET" in reply.headers["Allow"], reply
    return error


def token_reply(reply: Reply) -> str | None:
    """`/token`: tokens (RFC 6749 §5.1; DPoP-bound ones, RFC 9449 §5, say so in their
    `token_type`) or an error (§5.2); never cacheable."""
    if reply.status != 200:
        return error_reply(reply, TOKEN_ERRORS | ROUTING_ERRORS)
    body = json_body(reply)
    assert body["token_type"] in ("Bearer", "DPoP") and isinstance(body["access_token"], str), reply
    assert isinstance(body["expires_in"], int) and isinstance(body["scope"], str), reply
    assert reply.headers["Cache-Control"] == "no-store", reply
    return None


def introspection_reply(reply: Reply) -> str | None:
    """`/introspect` (RFC 7662 §2.2): `{"active": bool, ...}` or an error."""
    if reply.status != 200:
        return error_reply(reply, TOKEN_ERRORS | ROUTING_ERRORS)
    body = json_body(reply)
    assert isinstance(body.get("active"), bool), reply
    if not body["active"]:
        assert body == {"active": False}, reply  # nothing else about a dead token
    assert reply.headers["Cache-Control"] == "no-store", reply
    return None


def revocation_reply(reply: Reply) -> str | None:
    """`/revoke` (RFC 7009 §2.2): 200 with an empty body, or an error."""
    if reply.status != 200:
        return error_reply(reply, TOKEN_ERRORS | ROUTING_ERRORS)
    assert reply.body == b"" and reply.headers["Cache-Control"] == "no-store", reply
    return None


SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")


def page_reply(reply: Reply) -> None:
    """A login front-end page (the form, the consent screen or an error page): HTML with the
    security headers, never a 5xx."""
    assert reply.status < 500, reply
    assert reply.headers.get("Content-Type", "").startswith("text/html"), reply
    for name in SECURITY_HEADERS:
        assert name in reply.headers, reply


def redirect_params(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)
