"""`POST /token` (RFC 6749 §3.2): a flat list of steps, then the grant's own handler.

read the form -> pick the grant -> the client certificate, if the listener takes any ->
authenticate the client (refused while its client_id is locked out) -> take one request from
its rate limit, if it has one -> check it may use the grant -> the DPoP proof, if one came
(RFC 9449 §4.3; required of `--dpop-bound` clients) -> keep only the grant's parameters ->
handle, bound to the certificate and the DPoP key (`cnf` in the access token: RFC 8705 §3,
RFC 9449 §6). Responses carry `Cache-Control: no-store`, and with server nonces on, every
response (errors too) carries the next `DPoP-Nonce`.

The rate limit is checked after authentication: a client_id is public, so a limit checked
before would let anyone spend a client's requests by sending its id. Unauthenticated floods
are the lockout's and the ingress's to stop. A client without a limit skips it entirely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from tokensvc import limits
from tokensvc.binding import NO_BINDING, Binding, certificate_binding
from tokensvc.clientauth import authenticate
from tokensvc.errors import (
    InvalidRequest,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from tokensvc.grants import REGISTRY
from tokensvc.http.appkeys import CLIENT_AUTH, CLIENT_CERTS, DPOP, SERVICE
from tokensvc.http.dpop import HEADER, Dpop, proof_of
from tokensvc.http.forms import read_form
from tokensvc.http.middleware import LOG_FIELDS
from tokensvc.http.responses import NO_STORE

# RFC 6749 §5.1; built once (aiohttp copies it into each response).
TOKEN_HEADERS = CIMultiDict({**NO_STORE, "Content-Type": "application/json"})


def token_endpoint(dpop: Dpop) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of `POST /token`: with server nonces on, the next nonce on every answer
    (RFC 9449 §8), so a client never needs a failed request; without them `token` itself,
    one coroutine less per request."""
    nonces = dpop.nonces
    if nonces is None:
        return token

    async def with_nonce(request: web.Request) -> web.Response:
        nonce = nonces.current(request.app[SERVICE].clock())
        try:
            response = await token(request)
        except OAuthError as exc:
            exc.headers.setdefault("DPoP-Nonce", nonce)
            raise
        response.headers["DPoP-Nonce"] = nonce
        return response

    return with_nonce


async def token(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    params = await read_form(request)
    fields = request[LOG_FIELDS]
    grant_type = params.get("grant_type")
    if grant_type is None:
        raise InvalidRequest("grant_type is required.")
    grant = REGISTRY.get(grant_type)
    if grant is None:
        fields["grant_type"] = "unsupported"
        raise UnsupportedGrantType()
    fields["grant_type"] = grant_type
    certs = request.app[CLIENT_CERTS]
    certificate = None if certs is None else certs.of(request)
    try:
        client = await authenticate(
            request.app[CLIENT_AUTH], request.headers.get("Authorization"), params, certificate
        )
        fields["client_id"] = client.client_id
        if client.rate_limit is not None:
            await limits.admit(svc.stores.rates, client)
    except SlowDown as exc:  # for the log line and metrics: whose limit, and which
        fields["client_id"], fields["limit"] = exc.client_id, exc.limit
        raise
    if grant_type not in client.grant_types:
        raise UnauthorizedClient()
    binding = NO_BINDING if certificate is None else certificate_binding(certificate)
    if HEADER in request.headers:
        dpop = request.app[DPOP]
        proof = await proof_of(request, svc, dpop, dpop.token_url)
        if proof is not None:
            binding = Binding(x5t_s256=binding.x5t_s256, jkt=proof.jkt)
    elif client.dpop_bound:
        raise InvalidRequest("This client's token requests must carry a DPoP proof.")
    parameters = {k: params[k] for k in grant.parameters & params.keys()}
    body = await grant.handle(svc, client, parameters, binding)
    return web.Response(body=body, headers=TOKEN_HEADERS)
