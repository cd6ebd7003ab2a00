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
from tokensvc.dpopproof import ALGS
from tokensvc.errors import InvalidRequest, OAuthError
from tokensvc.http.appkeys import CLIENT_CERTS, DPOP, SERVICE
from tokensvc.http.dpop import proof_of
from tokensvc.http.forms import FORM, read_form
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import NO_STORE, json_response
from tokensvc.service import TokenService
from tokensvc.signing.verify import InvalidToken


def _challenge(
    status: int, error: str | None = None, description: str = "", scheme: str = "Bearer"
) -> web.Response:
    """RFC 6750 §3 (RFC 9449 §7.1 for `scheme` DPoP): the error travels in
    `WWW-Authenticate` (and, for humans, in the body)."""
    header = f'{scheme} realm="tokensvc"'
    if scheme == "DPoP":
        header += f', algs="{" ".join(ALGS)}"'
    if error is not None:
        header += f', error="{error}", error_description="{description}"'
    body = {"error": error, "error_description": description} if error else {}
    return json_response(body, status, {**NO_STORE, "WWW-Authenticate": header})


async def _presented(request: web.Request) -> tuple[str | None, str, bool]:
    """(token, scheme, ambiguous): the access token, how it came (`Bearer`, or `DPoP` in
    the Authorization header, RFC 9449 §7.1), and whether it was sent more than one way."""
    header = request.headers.get("Authorization")
    scheme, from_header = "Bearer", None
    if header and header[:7].lower() == "bearer ":
        from_header = header[7:].strip()
    elif header and header[:5].lower() == "dpop ":
        scheme, from_header = "DPoP", header[5:].strip()
    from_form = None
    if request.method == "POST" and request.content_type == FORM:
        from_form = (await read_form(request)).get("access_token")
    ambiguous = from_header is not None and from_form is not None
    return from_header or from_form, scheme, ambiguous


def _holds(request: web.Request, thumbprint: object) -> bool:
    """Did the request present the client certificate of `thumbprint` (RFC 8705 §3)?"""
    certs = request.app[CLIENT_CERTS]
    try:
        certificate = None if certs is None else certs.of(request)
    except InvalidRequest:
        return False
    return certificate is not None and x5t_s256(certificate) == thumbprint


async def _dpop_refusal(
    request: web.Request, svc: TokenService, token: str, scheme: str, jkt: object
) -> str | None:
    """Why a DPoP-bound token (or one sent with the DPoP scheme) is refused here, or None:
    it must come as `Authorization: DPoP` with a proof of its key whose `ath` is its hash
    (RFC 9449 §7.1)."""
    if jkt is None:
        return "The token is not DPoP-bound: send it as Bearer."
    if scheme != "DPoP":
        return "The token is DPoP-bound: send it with the DPoP scheme and a proof."
    dpop = request.app[DPOP]
    try:
        proof = await proof_of(
            request, svc, dpop, dpop.userinfo_url, access_token=token, nonce=False
        )
    except OAuthError as exc:
        return exc.description
    if proof is None:
        return "A DPoP proof is required with this token."
    if proof.jkt != jkt:
        return "The DPoP proof is not made with the token's key."
    return None


async def userinfo(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    token, scheme, ambiguous = await _presented(request)
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
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt is not None or scheme == "DPoP":
        refused = await _dpop_refusal(request, svc, token, scheme, jkt)
        if refused is not None:
            request[LOG_FIELDS]["error"] = "invalid_token"
            return _challenge(401, "invalid_token", refused, "DPoP")
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
