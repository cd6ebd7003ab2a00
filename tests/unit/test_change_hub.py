"""The change feed's in-process half: `Cached.forget` and `clear` (reads under way included),
`storage.changes.ChangeHub` (caches by kind, subscribers, resets, a bounded backlog), the
stream's wire format, and the login front-end's cache forgetting what the stream says."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tokensvc.login.tokenapi import SETTLE, ClientInfo, TokenAPI
from tokensvc.metrics import Metrics
from tokensvc.models import Resource
from tokensvc.registration import new_resource
from tokensvc.storage.cache import CachedResources
from tokensvc.storage.changes import BACKLOG, Change, ChangeHub, line, parse
from tokensvc.storage.memory import MemoryResources

API = "https://api.example.com"
OTHER = "https://other.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedResources(MemoryResources):
    """Each read takes what the store holds at once, then waits for `gate` before answering:
    a read under way while the record changes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def get(self, identifier: str) -> Resource | None:
        self.reads += 1
        found = await super().get(identifier)
        await self.gate.wait()
        return found


async def cached(*identifiers: str) -> tuple[GatedResources, CachedResources]:
    inner = GatedResources()
    for identifier in identifiers:
        await inner.add(new_resource(identifier=identifier, scopes=["api:read"]))
    return inner, CachedResources(inner, 30, clock=Clock())


# --------------------------------------------------------------------------- Cached


async def test_forget_makes_the_next_get_read_the_store() -> None:
    inner, cache = await cached(API, OTHER)
    await cache.get(API), await cache.get(OTHER)
    assert inner.reads == 2
    await inner.remove(API)  # as another process would, behind the cache's back
    assert await cache.get(API) is not None  # still cached: only the feed can tell
    cache.forget(API)
    assert await cache.get(API) is None
    assert await cache.get(OTHER) is not None and inner.reads == 3  # the other stays


async def test_a_read_under_way_when_forgotten_answers_but_is_not_kept() -> None:
    inner, cache = await cached(API)
    inner.gate.clear()
    stale = asyncio.ensure_future(cache.get(API))  # reads the record, then waits
    await asyncio.sleep(0)
    await inner.remove(API)
    cache.forget(API)  # the change arrives while that read is under way
    later = asyncio.ensure_future(cache.get(API))  # must not join the stale read
    await asyncio.sleep(0)
    inner.gate.set()
    assert (await stale) is not None  # its caller saw the record as it was read
    assert await later is None
    assert cache.peek(API) == (True, None)  # what is kept is the later read's
    assert inner.reads == 2


async def test_clear_forgets_everything_and_reads_under_way() -> None:
    inner, cache = await cached(API, OTHER)
    await cache.get(API)
    inner.gate.clear()
    under_way = asyncio.ensure_future(cache.get(OTHER))
    await asyncio.sleep(0)
    cache.clear()
    inner.gate.set()
    assert await under_way is not None
    assert cache.peek(API) == (False, None) and cache.peek(OTHER) == (False, None)


# --------------------------------------------------------------------------- ChangeHub


async def test_the_hub_forgets_in_the_caches_of_the_kind_and_tells_subscribers() -> None:
    _, resources = await cached(API, OTHER)
    await resources.get(API), await resources.get(OTHER)
    hub = ChangeHub()
    hub.watch("resource", resources)
    metrics = Metrics()
    hub.observe(metrics)
    with hub.subscribe() as first, hub.subscribe() as second:
        hub.apply("client", API)  # another kind: the resource cache keeps its entry
        assert resources.peek(API)[0]
        hub.apply("resource", API)
        assert not resources.peek(API)[0] and resources.peek(OTHER)[0]
        assert await first.next(0.1) == [Change("client", API), Change("resource", API)]
        hub.apply("federation", "https://issuer.example.com")  # nothing cached: passed on
        hub.apply("truncate", "resources")  # a kind nobody knows: everything goes
        assert not resources.peek(OTHER)[0]
        # a reset replaces what was queued before it: the reader forgets everything anyway
        assert await first.next(0.1) == [Change("reset")]
        assert await second.next(0.1) == [Change("reset")]
    hub.apply("client", API)
    assert await first.next(0.01) == []  # gone with its block: nothing more arrives
    events = metrics.change_feed_events
    assert events.labels("resource")._value.get() == 1
    assert events.labels("reset")._value.get() == 1


async def test_a_subscriber_that_falls_behind_gets_one_reset() -> None:
    hub = ChangeHub()
    with hub.subscribe() as slow:
        for i in range(BACKLOG + 5):
            hub.apply("client", f"c{i}")
        batch = await slow.next(0.1)
        # the first BACKLOG gave way to one reset, which covers the overflowing one too
        assert batch == [Change("reset")] + [
            Change("client", f"c{BACKLOG + i}") for i in (1, 2, 3, 4)
        ]


async def test_end_streams_wakes_every_subscriber() -> None:
    hub = ChangeHub()
    with hub.subscribe() as sub:
        waiting = asyncio.ensure_future(sub.next(30))
        await asyncio.sleep(0)
        hub.end_streams()
        assert await asyncio.wait_for(waiting, 1) == [] and sub.ended


async def test_a_stream_opened_after_the_streams_ended_ends_at_once() -> None:
    """The front-end reconnecting while the listener shuts down (its `on_shutdown` already
    ran): that stream must not hold the shutdown until its timeout either."""
    hub = ChangeHub()
    hub.end_streams()
    with hub.subscribe() as sub:
        assert sub.ended
        assert await asyncio.wait_for(sub.next(30), 1) == []


async def test_the_feed_state_is_a_gauge_once_a_feed_runs() -> None:
    hub, metrics = ChangeHub(), Metrics()
    hub.observe(metrics)
    assert b"tokensvc_change_feed_connected{" not in metrics.exposition()  # memory: no feed
    hub.following("listen", True)
    assert b'tokensvc_change_feed_connected{mode="listen"} 1.0' in metrics.exposition()
    hub.following("listen", False)
    assert b'tokensvc_change_feed_connected{mode="listen"} 0.0' in metrics.exposition()


@pytest.mark.parametrize(
    ("change", "wire"),
    [
        (Change("client", "a b\n\u00e9"), b'{"kind":"client","key":"a b\\n\xc3\xa9"}\n'),
        (Change("reset"), b'{"kind":"reset"}\n'),
        (Change("ping"), b'{"kind":"ping"}\n'),
    ],
)
def test_wire_lines_round_trip(change: Change, wire: bytes) -> None:
    assert line(change) == wire
    assert parse(wire) == change


@pytest.mark.parametrize(
    "raw", [b"nonsense\n", b"[1]\n", b'{"kind":"client"}\n', b'{"kind":"grant","key":"x"}\n']
)
def test_a_line_nobody_understands_reads_as_a_reset(raw: bytes) -> None:
    assert parse(raw) == Change("reset")
    assert parse(b"\n") is None


# --------------------------------------------------------------------------- login's cache


class StubAPI(TokenAPI):
    """The internal API as a dict; each call can be held at `gate`."""

    def __init__(self, clock: Clock) -> None:
        super().__init__("http://token.invalid", "bearer", http=None, clock=clock)  # type: ignore[arg-type]
        self.clients: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def _send(
        self, method: str, path: str, json: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        self.calls += 1
        found = self.clients.get(path.rsplit("/", 1)[1])
        await self.gate.wait()
        return (200, found) if found else (404, {"error": "not_found"})


def client_json(client_id: str, resources: list[str] | None = None) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "redirect_uris": ["https://app.example.com/cb"],
        "public": False,
        "scopes": ["openid"],
        "grant_types": ["authorization_code"],
        "resources": resources or [],
    }


async def test_the_login_cache_forgets_what_the_stream_names() -> None:
    clock = Clock()
    api = StubAPI(clock)
    api.clients = {"web": client_json("web"), "app": client_json("app", [API])}
    assert isinstance(await api.client("web"), ClientInfo)
    await api.client("app")
    assert api.calls == 2
    await api.client("web")
    assert api.calls == 2  # cached

    del api.clients["web"]
    api.forget("web")
    assert await api.client("web") is None  # asked again at once
    clock.now += SETTLE  # reads right after a change are not kept: the replica may lag
    await api.client("app")
    assert api.calls == 3  # still cached: another client

    api.forget_naming(API)
    clock.now += SETTLE
    await api.client("app"), await api.client("app")
    assert api.calls == 4  # read again once, then cached again

    api.forget_all()
    clock.now += SETTLE
    await api.client("app")
    assert api.calls == 5


async def test_the_login_cache_keeps_no_read_that_predates_a_change() -> None:
    clock = Clock()
    api = StubAPI(clock)
    api.clients = {"web": client_json("web")}
    api.gate.clear()
    stale = asyncio.ensure_future(api.client("web"))
    await asyncio.sleep(0)
    del api.clients["web"]
    api.forget("web")
    api.gate.set()
    assert isinstance(await stale, ClientInfo)  # answered as read, but not kept
    clock.now += SETTLE
    assert await api.client("web") is None and api.calls == 2


def test_a_resource_change_leaves_clients_that_do_not_name_it() -> None:
    api = StubAPI(Clock())
    api._cache = {
        "app": (2000.0, ClientInfo.from_json(client_json("app", [API]))),
        "web": (2000.0, ClientInfo.from_json(client_json("web", [OTHER]))),
        "gone": (2000.0, None),
    }
    api.forget_naming(API)
    assert set(api._cache) == {"web", "gone"}
