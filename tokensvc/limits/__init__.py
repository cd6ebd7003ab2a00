"""Abuse limits at `/token`: a request rate per client, and lockouts after failed client
authentication.

* `buckets`: a token bucket per client_id, for clients registered with a `rate_limit`
  (`tokensvc client add --rate-limit R [--rate-burst B]`). Checked after the client has
  authenticated, so nobody can spend another client's requests by sending its (public)
  client_id; a client without a limit never reaches it.
* `lockout`: `MAX_FAILURES` failed authentications of one client_id within `WINDOW` seconds
  lock that client_id out for `LOCKOUT` seconds, whatever it presents, and no other.

Both answer `429 slow_down` with `Retry-After` (`tokensvc.errors.SlowDown`); both live in
Redis when `TOKENSVC_REDIS_URL` is set, so that every replica shares them, and in memory
otherwise. Both fail open: they protect the service, and a Redis outage must not turn them
into one.
"""

from __future__ import annotations

from tokensvc.errors import SlowDown
from tokensvc.limits.buckets import RateLimiter
from tokensvc.models import Client


async def admit(rates: RateLimiter, client: Client) -> None:
    """Take one request from a rate-limited client's bucket, or raise `SlowDown`. Callers check
    `client.rate_limit is not None` first, so that an unlimited client costs no await."""
    assert client.rate_limit is not None and client.rate_burst is not None
    wait = await rates.take(client.client_id, client.rate_limit, client.rate_burst)
    if wait > 0:
        raise SlowDown(
            wait,
            "The client is over its request rate; try again after Retry-After seconds.",
            limit="rate",
            client_id=client.client_id,
        )
