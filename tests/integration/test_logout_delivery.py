"""Back-channel logout delivery (tokensvc.logout.deliverer) against a real HTTP receiver on
loopback, with the memory and the Postgres queue: a session's end reaches each client with a
`backchannel_logout_uri` as a logout token that verifies against the published keys; a
failing receiver is retried with the same `jti` until it answers or the retry window ends;
a client without the URI is skipped; outcomes are counted."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tests.harness import Clock
from tests.integration.conftest import RealBackend
from tokensvc.logout.deliverer import LogoutDeliverer, backoff
from tokensvc.metrics import Metrics
from tokensvc.models import Client, Grant
from tokensvc.signing.keys import KeySet
from tokensvc.signing.tokens import TokenMinter
from tokensvc.storage.memory import MemoryClients, MemoryGrants
from tokensvc.storage.protocols import ClientStore, GrantStore, LogoutQueue

ISSUER = "https://issuer.example"


@dataclass
class Receiver:
    """An RP's back-channel logout endpoint: answers `statuses` in turn (then 200)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.tokens.append(str(form["logout_token"]))
        self.content_types.append(request.content_type)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rp = Receiver()
    app = web.Application()
    app.router.add_post("/backchannel", rp.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rp.url = f"http://{host}:{port}/backchannel"
    try:
        yield rp
    finally:
        await runner.cleanup()


@dataclass
class Parts:
    clients: ClientStore
    grants: GrantStore
    queue: LogoutQueue
    metrics: Metrics
    deliverer: LogoutDeliverer


@pytest.fixture
async def parts(
    real_backend: RealBackend | None, es256_keys: KeySet, clock: Clock
) -> AsyncIterator[Parts]:
    if real_backend is None:
        grants = MemoryGrants()
        clients, queue = MemoryClients(), grants.logouts
        clients.on_remove = grants.forget_client
        stores: tuple[ClientStore, GrantStore, LogoutQueue] = (clients, grants, queue)
    else:
        pg = real_backend.pg
        async with pg.connection() as conn:
            await conn.execute("TRUNCATE logout_deliveries")
        stores = (pg.clients, pg.grants, pg.logouts)
    metrics = Metrics()
    minter = TokenMinter(ISSUER, es256_keys, 300, lambda n: b"\x01" * n)
    deliverer = LogoutDeliverer(stores[2], stores[0], minter, metrics, clock=clock)
    try:
        yield Parts(*stores, metrics, deliverer)
    finally:
        await deliverer.close()


async def _signed_in(parts: Parts, clock: Clock, **clients: str | None) -> None:
    """One session `sid-1` of `user-1` with a grant for each client (name -> its URI)."""
    for name, uri in clients.items():
        client = Client(
            name,
            name,
            "client_secret_basic",
            frozenset({"authorization_code"}),
            backchannel_logout_uri=uri,
        )
        assert await parts.clients.add(client)
        grant = Grant(
            grant_id=f"g-{name}",
            client_id=name,
            sub="user-1",
            scope="openid",
            auth_time=int(clock()),
            sid="sid-1",
        )
        assert await parts.grants.issue(grant, None, clock() + 3600, clock())


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def _outcomes(metrics: Metrics) -> dict[str, float]:
    return {
        s.labels["outcome"]: s.value
        for family in metrics.backchannel_logouts.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


async def test_each_client_of_the_session_gets_a_verifiable_logout_token(
    parts: Parts, receiver: Receiver, clock: Clock, es256_keys: KeySet
) -> None:
    await _signed_in(parts, clock, web=receiver.url, other=receiver.url, quiet=None)
    await parts.grants.end_session("user-1", "sid-1", clock())
    assert await parts.deliverer.deliver_due() == 3
    assert len(receiver.tokens) == 2
    assert receiver.content_types == ["application/x-www-form-urlencoded"] * 2
    keys = JoseKeySet.import_key_set(es256_keys.public_jwks)
    seen = set()
    for token in receiver.tokens:
        decoded = jwt.decode(token, keys, algorithms=["ES256"])
        assert decoded.header["typ"] == "logout+jwt"
        claims = decoded.claims
        assert (claims["iss"], claims["sub"], claims["sid"]) == (ISSUER, "user-1", "sid-1")
        assert "nonce" not in claims
        assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
        seen.add(claims["aud"])
    assert seen == {"web", "other"}
    assert _outcomes(parts.metrics) == {"delivered": 2.0, "no_uri": 1.0}
    assert await parts.queue.take_due(clock() + 10_000, 30, 10) == []  # nothing left


async def test_a_failing_receiver_is_retried_with_the_same_jti_until_it_answers(
    parts: Parts, receiver: Receiver, clock: Clock
) -> None:
    await _signed_in(parts, clock, web=receiver.url)
    await parts.grants.end_session("user-1", "sid-1", clock())
    receiver.statuses = [500, 503]
    assert await parts.deliverer.deliver_due() == 1  # 500: retried in backoff(0) s
    assert await parts.deliverer.deliver_due() == 0  # not due yet
    clock.advance(backoff(0))
    assert await parts.deliverer.deliver_due() == 1  # 503: retried in backoff(1) s
    clock.advance(backoff(1))
    assert await parts.deliverer.deliver_due() == 1  # 200
    jtis = {_claims(t)["jti"] for t in receiver.tokens}
    assert len(receiver.tokens) == 3 and len(jtis) == 1
    assert _outcomes(parts.metrics) == {"retried": 2.0, "delivered": 1.0}


async def test_a_receiver_failing_past_the_window_is_given_up(
    parts: Parts, receiver: Receiver, clock: Clock
) -> None:
    await _signed_in(parts, clock, web=receiver.url)
    await parts.grants.end_session("user-1", "sid-1", clock())
    receiver.statuses = [500] * 100
    attempts = 0
    while await parts.deliverer.deliver_due() or attempts == 0:
        attempts += 1
        clock.advance(300)
    assert _outcomes(parts.metrics)["gave_up"] == 1.0
    assert 10 < len(receiver.tokens) < 20  # 1 s, 2 s ... 256 s, then every 300 s for an hour
    clock.advance(10_000)
    assert await parts.queue.take_due(clock(), 30, 10) == []


async def test_an_unreachable_receiver_counts_as_a_failure(parts: Parts, clock: Clock) -> None:
    await _signed_in(parts, clock, web="http://127.0.0.1:9/backchannel")
    await parts.grants.end_session("user-1", "sid-1", clock())
    assert await parts.deliverer.deliver_due() == 1
    assert _outcomes(parts.metrics) == {"retried": 1.0}
