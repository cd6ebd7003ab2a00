"""What the login front-end's views share: settings, stores, the internal-API client."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from tokensvc.config import Settings
from tokensvc.forwarded import Network, parse_networks
from tokensvc.limits.failures import FailureLimiter
from tokensvc.login.idtokenhint import HintVerifier
from tokensvc.login.sessions import SESSION_TTL, Interactions, Sessions
from tokensvc.login.tokenapi import TokenAPI
from tokensvc.opaque import Entropy, new_value
from tokensvc.readiness import readiness
from tokensvc.storage.protocols import ConsentStore, EphemeralStore, UserStore

if TYPE_CHECKING:
    from tokensvc.tracing.otel import Tracing

BROWSER_COOKIE = "tokensvc_browser"
SESSION_COOKIE = "tokensvc_session"


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The front-end's cookies. Served over HTTPS they carry the `__Host-` prefix (RFC 6265bis
    §4.1.3.2): a browser then accepts them only with `Secure`, `Path=/` and no `Domain`, so
    a related subdomain cannot plant or overwrite them."""

    browser: str
    session: str
    secure: bool

    @classmethod
    def for_settings(cls, settings: Settings) -> CookieNames:
        prefix = "__Host-" if settings.login_url.startswith("https://") else ""
        secure = bool(prefix) or not settings.dev
        return cls(prefix + BROWSER_COOKIE, prefix + SESSION_COOKIE, secure)


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
    tracing: Tracing | None = None  # None: OTEL_EXPORTER_OTLP_ENDPOINT unset (tokensvc.tracing)
    sessions: Sessions = field(init=False)
    interactions: Interactions = field(init=False)
    hints: HintVerifier = field(init=False)
    proxies: tuple[Network, ...] = field(init=False)
    cookies: CookieNames = field(init=False)

    def __post_init__(self) -> None:
        if self.tracing is not None:  # store calls as child spans of the request's
            for name in ("users", "consents", "ephemeral", "limiter"):
                self.tracing.trace_calls(getattr(self, name), name)
        self.proxies = parse_networks(",".join(self.settings.trusted_proxies))
        self.cookies = CookieNames.for_settings(self.settings)
        self.sessions = Sessions(self.ephemeral, self.entropy, self.session_ttl)
        self.interactions = Interactions(self.ephemeral, self.entropy)
        self.hints = HintVerifier(self.api, self.settings.issuer)

    def new_value(self) -> str:
        return new_value(32, self.entropy)

    async def readiness(self) -> dict[str, bool]:
        """Ready when the user store, the session store and the internal API answer."""
        return await readiness(
            {
                "users": self.users.ping,
                "sessions": self.ephemeral.ping,
                "token_service": self.api.ping,
            }
        )


CONTEXT = web.AppKey("login", LoginContext)
