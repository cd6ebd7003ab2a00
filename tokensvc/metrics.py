"""Prometheus metrics (`GET /metrics`): traffic, latency, issuance, errors, store latency, and
the token-security series an SRE alerts on (reuse, replays, lockouts).

Each service instance owns one registry, so tests and several services in one process (`dev`)
never share counters. Label values are bounded: endpoints are route templates, `client_id`
is only ever an authenticated or existing client (never a string an attacker chose).
"""

from __future__ import annotations

import os
import time
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from tokensvc.instrumented import Method, wrap_public_coroutines

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._issued: dict[tuple[str, str], Any] = {}
        self._rotated: dict[str, Any] = {}
        self.requests = Counter(
            "tokensvc_http_requests",
            "HTTP requests handled.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tokensvc_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "tokensvc_oauth_errors",
            "Error responses by RFC 6749 code.",
            ["endpoint", "error"],
            registry=r,
        )
        self.issued = Counter(
            "tokensvc_tokens_issued",
            "Successful token responses.",
            ["grant_type", "client_id"],
            registry=r,
        )
        self.store_latency = Histogram(
            "tokensvc_store_duration_seconds",
            "Time spent in a store call.",
            ["store", "operation"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_batches = Counter(
            "tokensvc_store_batches",
            "Round trips made for store calls batched per event-loop turn: divided by the "
            "operation's calls, what batching saved; for grants.issue and grants.rotate, one "
            "Postgres commit each.",
            ["store", "operation"],
            registry=r,
        )
        self.rotations = Counter(
            "tokensvc_refresh_rotations", "Refresh tokens rotated.", ["client_id"], registry=r
        )
        self.exchanges = Counter(
            "tokensvc_token_exchanges",
            "Tokens issued by token exchange (RFC 8693), by the exchanging client and the kind.",
            ["client_id", "issued"],
            registry=r,
        )
        self.grace_repeats = Counter(
            "tokensvc_refresh_grace_repeats",
            "Repeated refreshes answered with the same successor within the grace window.",
            ["client_id"],
            registry=r,
        )
        self.family_revocations = Counter(
            "tokensvc_family_revocations",
            "Grants revoked with every token of their family (reason: reuse, code_replay, revoke).",
            ["client_id", "reason"],
            registry=r,
        )
        self.code_replays = Counter(
            "tokensvc_code_replays", "Authorization codes used twice.", ["client_id"], registry=r
        )
        self.invalid_client = Counter(
            "tokensvc_invalid_client",
            "Failed client authentications (client_id is 'unknown' "
            "for ids that are not registered).",
            ["client_id"],
            registry=r,
        )
        self.backchannel_logouts = Counter(
            "tokensvc_backchannel_logouts",
            "Back-channel logout deliveries by outcome: delivered, retried (the receiver failed,"
            " another attempt is due), gave_up (failing for longer than the retry window), "
            "no_uri (the client has no backchannel_logout_uri, or is gone).",
            ["outcome"],
            registry=r,
        )
        self.admin_changes = Counter(
            "tokensvc_admin_changes",
            "Changes made through the admin API, by audit event (client.created, ...).",
            ["event"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tokensvc_rate_limited",
            "Requests refused by a limit.",
            ["client_id", "limit"],
            registry=r,
        )
        # The change feed (tokensvc.storage.changes): 0 means this process's caches are
        # falling back on TOKENSVC_CLIENT_CACHE_TTL until it reconnects. With workers, the
        # lowest of the live ones.
        self.change_feed_connected = Gauge(
            "tokensvc_change_feed_connected",
            "1 while the change feed follows the database (mode: listen, or poll behind "
            "PgBouncer), 0 while it reconnects.",
            ["mode"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.change_feed_events = Counter(
            "tokensvc_change_feed_events",
            "Changes the change feed applied, by kind (client, resource, federation; reset: "
            "every cache cleared).",
            ["kind"],
            registry=r,
        )

    def per_request(self, endpoint: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram children for one route and outcome,
        looked up once: `labels()` costs a lock and a tuple build on every call."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
        return children

    def issued_by(self, grant_type: str, client_id: str) -> Any:
        key = (grant_type, client_id)
        child = self._issued.get(key)
        if child is None:
            child = self._issued[key] = self.issued.labels(grant_type, client_id)
        return child

    def rotated_by(self, client_id: str) -> Any:
        """`rotations` for one client, looked up once (a rotation is every refresh)."""
        child = self._rotated.get(client_id)
        if child is None:
            child = self._rotated[client_id] = self.rotations.labels(client_id)
        return child

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # TOKENSVC_WORKERS > 1: every worker
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


S = TypeVar("S")
_TIMED = "_tokensvc_timed"  # set on a store whose calls are already observed


def time_calls(store: S, store_name: str, metrics: Metrics) -> S:
    """The same store, each public coroutine method observed in `store_latency` under
    `(store_name, method)`; a call costs one timer pair and one observe. Idempotent."""
    labels = metrics.store_latency.labels
    return wrap_public_coroutines(
        store, _TIMED, lambda name, method: _timed(method, labels(store_name, name))
    )


def _timed(method: Method, child: Histogram) -> Method:
    async def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            child.observe(time.perf_counter() - started)

    return timed
