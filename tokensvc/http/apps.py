"""Application factories: the public and the internal listener of the token service."""

from __future__ import annotations

import orjson
from aiohttp import web

from tokensvc.clientauth import ClientAuth
from tokensvc.clientauth.assertion import AssertionVerifier
from tokensvc.clientauth.mtls import CertificateMatcher
from tokensvc.clientauth.remotekeys import RemoteKeys
from tokensvc.http import admin, changestream, discovery, health, internal, tls
from tokensvc.http.appkeys import CLIENT_AUTH, DISCOVERY, DPOP, SERVICE
from tokensvc.http.dpop import Dpop
from tokensvc.http.forms import MAX_BODY
from tokensvc.http.introspect import introspect
from tokensvc.http.middleware import METRICS, canonical
from tokensvc.http.par import par
from tokensvc.http.revoke import revoke
from tokensvc.http.token import token_endpoint
from tokensvc.http.userinfo import userinfo
from tokensvc.metrics import CONTENT_TYPE
from tokensvc.service import TokenService
from tokensvc.tracing import span_middleware


def public_app(svc: TokenService) -> web.Application:
    app = web.Application(
        middlewares=[*span_middleware(svc.tracing), canonical], client_max_size=MAX_BODY
    )
    app[SERVICE] = svc
    app[METRICS] = svc.metrics
    app[DISCOVERY] = orjson.dumps(discovery.metadata(svc))
    app[CLIENT_AUTH] = client_auth(app, svc)
    tls.configure(app, svc.settings)  # HTTPS and client certificates (RFC 8705)
    app[DPOP] = Dpop.from_settings(svc.settings)
    app.router.add_post("/token", token_endpoint(app[DPOP]))
    app.router.add_get("/.well-known/openid-configuration", discovery.discovery)
    app.router.add_get("/.well-known/oauth-authorization-server", discovery.discovery)
    app.router.add_get("/jwks.json", discovery.jwks)
    app.router.add_route("GET", "/userinfo", userinfo)
    app.router.add_route("POST", "/userinfo", userinfo)
    app.router.add_post("/introspect", introspect)
    app.router.add_post("/revoke", revoke)
    app.router.add_post("/par", par)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def client_auth(app: web.Application, svc: TokenService) -> ClientAuth:
    """How the listener authenticates clients; its `jwks_uri` fetcher closes with the app."""
    remote = RemoteKeys()

    async def close(_: web.Application) -> None:
        await remote.close()

    app.on_cleanup.append(close)
    stores = svc.stores
    assertions = AssertionVerifier(
        svc.settings.issuer,
        stores.replay,
        stores.federations,
        remote,
        clock=svc.clock,
        clients=stores.clients,
    )
    svc.workloads = assertions  # federation tokens as token-exchange subjects (RFC 8693)
    certificates = CertificateMatcher.from_file(svc.settings.tls_client_ca_file, clock=svc.clock)
    return ClientAuth(
        stores.clients,
        stores.lockouts,
        assertions=assertions,
        certificates=certificates,
        clock=svc.clock,
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def internal_app(svc: TokenService) -> web.Application:
    app = web.Application(
        middlewares=[*span_middleware(svc.tracing), canonical, internal.require_bearer],
        client_max_size=MAX_BODY,
    )
    app[SERVICE] = svc
    app[METRICS] = svc.metrics
    app.router.add_post("/internal/codes", internal.mint_code)
    app.router.add_get("/internal/clients/{client_id}", internal.get_client)
    app.router.add_post("/internal/pushed", internal.take_pushed)
    app.router.add_post("/internal/sessions/end", internal.end_session)
    app.router.add_post("/internal/access/list", internal.person_grants)
    app.router.add_post("/internal/access/revoke", internal.revoke_access)
    app.router.add_get("/internal/jwks", discovery.jwks)
    app.router.add_get("/internal/changes", changestream.stream_changes)
    app.on_shutdown.append(changestream.end_streams)  # streams must not hold the shutdown
    admin.add_routes(app, svc)
    return app
