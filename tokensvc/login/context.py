"""What the login front-end's views share: settings, stores, the internal-API client."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tokensvc.config import Settings
from tokensvc.errors import StoreUnavailable
from tokensvc.forwarded import Network, parse_networks
from tokensvc.login.consents import ConsentStore
from tokensvc.login.ephemeral import EphemeralStore
from tokensvc.login.ratelimit import FailureLimiter
from tokensvc.login.sessions import SESSION_TTL, Interactions, Sessions
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.opaque import Entropy, new_value
from tokensvc.storage.protocols import UserStore


@dataclass(slots=True)
class LoginContext:
    settings: Settings
    users: UserStore
    consents: ConsentStore
    ephemeral: EphemeralStore
    limiter: FailureLimiter
    api: TokenAPI
    clock: Callable[[], float] = time.time
    entropy: Entropy = secrets.token_bytes
    session_ttl: int = SESSION_TTL
    sessions: Sessions = field(init=False)
    interactions: Interactions = field(init=False)
    proxies: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.proxies = parse_networks(",".join(self.settings.trusted_proxies))
        self.sessions = Sessions(self.ephemeral, self.entropy, self.session_ttl)
        self.interactions = Interactions(self.ephemeral, self.entropy)

    def new_value(self) -> str:
        return new_value(32, self.entropy)

    async def readiness(self, limit: float = 2.0) -> dict[str, bool]:
        """Ready when the user store, the session store and the internal API answer."""

        async def ok(ping: Callable[[], object]) -> bool:
            try:
                await asyncio.wait_for(ping(), limit)  # type: ignore[arg-type]
            except (StoreUnavailable, TimeoutError):
                return False
            return True

        users, sessions, api = await asyncio.gather(
            ok(self.users.ping), ok(self.ephemeral.ping), asyncio.wait_for(self.api.ping(), limit)
        )
        return {"users": users, "sessions": sessions, "token_service": bool(api)}


CONTEXT = web.AppKey("login", LoginContext)
