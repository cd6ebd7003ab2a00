"""Browser sessions and pending sign-ins ("interactions"), kept server-side.

Cookies and form fields carry only random values; the store keys records by their SHA-256, so
a copy of the store cannot be replayed as a cookie. An interaction holds the validated
authorization request and its CSRF token, and is bound to the browser that started it: a form
posted from another browser (login CSRF) does not match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from tokensvc.login.authorize import AuthorizationRequest
from tokensvc.opaque import Entropy, lookup_hash, new_value
from tokensvc.storage.protocols import EphemeralStore

SESSION_TTL = 12 * 3600
INTERACTION_TTL = 15 * 60


@dataclass(frozen=True, slots=True)
class BrowserSession:
    sub: str
    auth_time: int
    sid: str  # public session id for ID tokens; not the cookie value
    amr: tuple[str, ...] = ("pwd",)


@dataclass(frozen=True, slots=True)
class Interaction:
    request: AuthorizationRequest
    client_name: str
    csrf: str
    browser: str  # hex SHA-256 of the browser cookie it belongs to
    stage: str = "login"  # or "consent"
    sub: str | None = None

    def csrf_matches(self, presented: str | None) -> bool:
        return same_secret(presented, self.csrf)

    def belongs_to(self, browser_cookie: str | None) -> bool:
        if browser_cookie is None:
            return False
        return hmac.compare_digest(lookup_hash(browser_cookie).hex(), self.browser)


def same_secret(presented: str | None, expected: str) -> bool:
    """Whether a form field holds `expected`, compared in constant time."""
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode()
    )


def session_csrf(cookie: str) -> str:
    """The CSRF token of the forms a signed-in person posts (sign out, remove access): a hash
    of the session cookie, so only a page served to the browser holding that cookie can know
    it, and it needs no storage of its own. Domain-separated from the store key
    (`lookup_hash(cookie)`): a copy of the store does not yield it, nor it the key."""
    digest = hashlib.sha256(b"tokensvc session csrf\x00" + cookie.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Sessions:
    def __init__(
        self, store: EphemeralStore, entropy: Entropy = secrets.token_bytes, ttl: int = SESSION_TTL
    ) -> None:
        self._store = store
        self._entropy = entropy
        self._ttl = ttl

    async def start(self, sub: str, auth_time: int) -> tuple[str, BrowserSession]:
        """A new session (a new cookie value: no fixation); returns the cookie value."""
        cookie = new_value(32, self._entropy)
        session = BrowserSession(sub=sub, auth_time=auth_time, sid=new_value(16, self._entropy))
        await self._store.put(lookup_hash(cookie), orjson.dumps(asdict(session)), self._ttl)
        return cookie, session

    async def get(self, cookie: str | None) -> BrowserSession | None:
        if not cookie:
            return None
        raw = await self._store.get(lookup_hash(cookie))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return BrowserSession(data["sub"], data["auth_time"], data["sid"], tuple(data["amr"]))

    async def end(self, cookie: str | None) -> None:
        if cookie:
            await self._store.delete(lookup_hash(cookie))


class Interactions:
    def __init__(
        self,
        store: EphemeralStore,
        entropy: Entropy = secrets.token_bytes,
        ttl: int = INTERACTION_TTL,
    ) -> None:
        self._store = store
        self._entropy = entropy
        self._ttl = ttl

    def _dump(self, interaction: Interaction) -> bytes:
        data: dict[str, Any] = asdict(interaction)
        data["request"] = interaction.request.to_dict()
        return orjson.dumps(data)

    async def begin(
        self,
        request: AuthorizationRequest,
        client_name: str,
        browser_cookie: str,
        stage: str = "login",
        sub: str | None = None,
    ) -> tuple[str, Interaction]:
        interaction = Interaction(
            request=request,
            client_name=client_name,
            csrf=new_value(32, self._entropy),
            browser=lookup_hash(browser_cookie).hex(),
            stage=stage,
            sub=sub,
        )
        key = new_value(32, self._entropy)
        await self._store.put(lookup_hash(key), self._dump(interaction), self._ttl)
        return key, interaction

    async def advance(
        self, key: str, interaction: Interaction, *, stage: str, sub: str
    ) -> Interaction:
        """Move to the next stage under the same id, with a fresh CSRF token."""
        moved = replace(interaction, stage=stage, sub=sub, csrf=new_value(32, self._entropy))
        await self._store.put(lookup_hash(key), self._dump(moved), self._ttl)
        return moved

    async def get(self, key: str | None) -> Interaction | None:
        return _load(await self._store.get(lookup_hash(key))) if key else None

    async def finish(self, key: str) -> Interaction | None:
        """Take the interaction: of concurrent submissions of one form only one proceeds."""
        return _load(await self._store.take(lookup_hash(key)))


def _load(raw: bytes | None) -> Interaction | None:
    if raw is None:
        return None
    data = orjson.loads(raw)
    data["request"] = AuthorizationRequest.from_dict(data["request"])
    return Interaction(**data)
