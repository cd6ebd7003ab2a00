"""Typed application keys, in one place."""

from __future__ import annotations

from aiohttp import web

from tokensvc.clientauth import ClientAuth
from tokensvc.http.clientcert import ClientCerts
from tokensvc.http.dpop import Dpop
from tokensvc.service import TokenService

SERVICE = web.AppKey("service", TokenService)
DISCOVERY = web.AppKey("discovery", bytes)
CLIENT_AUTH = web.AppKey("client_auth", ClientAuth)
# Where the public listener takes client certificates from; None: nowhere (RFC 8705 §2).
CLIENT_CERTS: web.AppKey[ClientCerts | None] = web.AppKey("client_certs")
# DPoP proofs' URLs and server nonces (RFC 9449).
DPOP = web.AppKey("dpop", Dpop)
