"""`GET /internal/changes`: the change feed for the login front-end, which has no database
(SPEC: an admin change is in force everywhere within 1 s, the front-end's cached clients too).

A long-lived NDJSON response (`tokensvc.storage.changes.line`), behind the internal listener's
bearer like the rest of it: one line per change this replica's own feed applies, `reset` when
it cleared everything, and a `ping` every `KEEPALIVE` seconds so that either end notices a
dead connection. A subscriber that stops reading gets a single reset instead of an unbounded
backlog. Nothing is replayed on connecting: the front-end clears its cache on every
(re)connection instead, as it may have missed changes in between.

At shutdown the listener's `on_shutdown` ends every stream (`end_streams`), which aiohttp runs
before it waits for the requests in flight: a stream never holds the shutdown for its timeout.
"""

from __future__ import annotations

from aiohttp import web

from tokensvc.http.appkeys import SERVICE
from tokensvc.storage.changes import PING, Change, line

KEEPALIVE = 5.0  # seconds between pings; the front-end gives up on a silent stream after 15
CONTENT_TYPE = "application/x-ndjson"
_PING = line(Change(PING))


async def stream_changes(request: web.Request) -> web.StreamResponse:
    hub = request.app[SERVICE].stores.changes
    response = web.StreamResponse(
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    )
    with hub.subscribe() as changes:  # before the headers: nothing after them is missed
        await response.prepare(request)
        try:
            await response.write(_PING)
            while not changes.ended:
                batch = await changes.next(KEEPALIVE)
                if batch:
                    await response.write(b"".join(line(change) for change in batch))
                elif not changes.ended:
                    await response.write(_PING)
            await response.write_eof()
        except ConnectionError:  # the front-end went away; aiohttp's own reset included
            pass
    return response


async def end_streams(app: web.Application) -> None:
    """`on_shutdown` of the internal listener."""
    app[SERVICE].stores.changes.end_streams()
