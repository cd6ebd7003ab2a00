"""Typed application keys, in one place."""

from __future__ import annotations

from aiohttp import web

from tokensvc.clientauth import ClientAuth
from tokensvc.service import TokenService

SERVICE = web.AppKey("service", TokenService)
DISCOVERY = web.AppKey("discovery", bytes)
CLIENT_AUTH = web.AppKey("client_auth", ClientAuth)
