"""Provider metadata (OIDC Discovery 1.0 §3, RFC 8414 §2) and the public JWKS (RFC 7517 §5).

Both are built ahead (the metadata at start-up, the JWKS once per key-schedule phase);
serving them costs no work per request.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tokensvc.clientauth import SUPPORTED_METHODS
from tokensvc.dpopproof import ALGS as DPOP_ALGS
from tokensvc.grants import REGISTRY
from tokensvc.http.appkeys import DISCOVERY, SERVICE
from tokensvc.publickeys import ASSERTION_ALGS
from tokensvc.service import TokenService
from tokensvc.signing.jws import ALGORITHMS
from tokensvc.signing.schedule import JWKS_MAX_AGE


def metadata(svc: TokenService) -> dict[str, Any]:
    issuer = svc.settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": svc.settings.login_url + "/authorize",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks.json",
        "userinfo_endpoint": issuer + "/userinfo",
        "introspection_endpoint": issuer + "/introspect",
        "revocation_endpoint": issuer + "/revoke",
        # RFC 9126 §5: pushed requests are accepted, and required only of clients registered
        # with --require-par (their metadata says so, §6).
        "pushed_authorization_request_endpoint": issuer + "/par",
        "require_pushed_authorization_requests": False,
        # Introspection is for confidential clients only (README).
        "introspection_endpoint_auth_methods_supported": [
            m for m in SUPPORTED_METHODS if m != "none"
        ],
        "revocation_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": sorted(REGISTRY),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        # RFC 8705 §3.3: a request with a client certificate gets certificate-bound tokens.
        "tls_client_certificate_bound_access_tokens": True,
        # RFC 9449 §5.1: DPoP proofs are accepted at /token (and bound tokens at /userinfo).
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "at_hash",
            "sid",
            "name",
            "email",
            "email_verified",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        # OIDC RP-Initiated Logout 1.0 §2.1 at the login front-end; Back-Channel Logout 1.0
        # §2.1: logout tokens are posted, and carry `sid` (`tokensvc.logout`).
        "end_session_endpoint": svc.settings.login_url + "/logout",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }


async def discovery(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DISCOVERY], content_type="application/json")


# Relying parties may cache the key set this long; `keys rotate` announces a key at least this
# long before it signs (signing.schedule), so a cache that honours the header never misses it.
JWKS_CACHE_CONTROL = f"public, max-age={JWKS_MAX_AGE}"


async def jwks(request: web.Request) -> web.Response:
    """The keys published now (`signing.schedule`), serialized once per schedule phase."""
    svc = request.app[SERVICE]
    return web.Response(
        body=svc.keys.at(svc.clock()).jwks_body,
        content_type="application/jwk-set+json",
        headers={"Cache-Control": JWKS_CACHE_CONTROL},
    )
