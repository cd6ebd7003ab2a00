"""`GET|POST /userinfo` (OIDC Core §5.3) with RFC 6750 bearer errors.

Returns `sub` and the claims released for the grant, narrowed to the token's scope. The token
comes from the `Authorization: Bearer` header or, for POST, the `access_token` form field
(RFC 6750 §2.2) — never both. A token for a resource (RFC 8707 `aud`) is refused: this
endpoint is the issuer's. A certificate-bound token (`cnf.x5t#S256`) is accepted only
with that client certificate (RFC 8705 §3).
"""

from __future__ import annotations

from aiohttp import web

from tokensvc import accesstoken
from tokensvc.binding import x5t_s256
from tokensvc.claims import claims_for_scope
from tokensvc.errors import InvalidRequest
from tokensvc.http.appkeys import CLIENT_CERTS, SERVICE
from tokensvc.http.forms import FORM, read_form
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import NO_STORE, json_response
from tokensvc.signing.verify import InvalidToken


def _challenge(status: int, error: str | None = None, description: str = "") -> web.Response:
    """RFC 6750 §3: the error travels in `WWW-Authenticate` (and, for humans, in the body)."""
    header = 'Bearer realm="tokensvc"'
    if error is not None:
        header += f', error="{error}", error_description="{description}"'
    body = {"error": error, "error_description": description} if error else {}
    return json_response(body, status, {**NO_STORE, "WWW-Authenticate": header})


async def _presented(request: web.Request) -> tuple[str | None, bool]:
    """(token, ambiguous): the bearer token and whether it was sent more than one way."""
    header = request.headers.get("Authorization")
    from_header = header[7:].strip() if header and header[:7].lower() == "bearer " else None
    from_form = None
    if request.method == "POST" and request.content_type == FORM:
        from_form = (await read_form(request)).get("access_token")
    ambiguous = from_header is not None and from_form is not None
    return from_header or from_form, ambiguous


def _holds(request: web.Request, thumbprint: object) -> bool:
    """Did the request present the client certificate of `thumbprint` (RFC 8705 §3)?"""
    certs = request.app[CLIENT_CERTS]
    try:
        certificate = None if certs is None else certs.of(request)
    except InvalidRequest:
        return False
    return certificate is not None and x5t_s256(certificate) == thumbprint


async def userinfo(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    token, ambiguous = await _presented(request)
    if ambiguous:
        return _challenge(400, "invalid_request", "Send the token one way only.")
    if token is None:
        return _challenge(401)
    try:
        checked = await accesstoken.check(svc, token)
    except InvalidToken as exc:
        request[LOG_FIELDS]["error"] = "invalid_token"
        return _challenge(401, "invalid_token", str(exc))
    request[LOG_FIELDS]["client_id"] = checked.claims["client_id"]
    aud = checked.claims.get("aud")
    if aud != svc.minter.audience and not (isinstance(aud, list) and svc.minter.audience in aud):
        # RFC 8707: a token for another API is not one for /userinfo, the issuer's own.
        request[LOG_FIELDS]["error"] = "invalid_token"
        return _challenge(401, "invalid_token", "The token is for another resource.")
    cnf = checked.claims.get("cnf")
    if isinstance(cnf, dict) and "x5t#S256" in cnf and not _holds(request, cnf["x5t#S256"]):
        request[LOG_FIELDS]["error"] = "invalid_token"
        return _challenge(
            401, "invalid_token", "The token is bound to a client certificate not presented."
        )
    if checked.grant is None or "openid" not in checked.scope.split(" "):
        request[LOG_FIELDS]["error"] = "insufficient_scope"
        return _challenge(403, "insufficient_scope", "The token lacks the openid scope.")
    body = {"sub": checked.grant.sub, **claims_for_scope(checked.grant.claims, checked.scope)}
    return json_response(body, headers=NO_STORE)
