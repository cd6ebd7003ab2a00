"""Tracing with OpenTelemetry (SPEC: Tracing), on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
set: then `tokensvc.tracing.otel` is imported and the services get a `Tracing`; otherwise
nothing of OpenTelemetry is imported, no middleware runs and no store call is wrapped, so
tracing off costs nothing on the hot path.

What a span may carry is decided here, not by an instrumentation library: the method, the
route template (never the path as sent, nor its query), the status, the store and its
operation, never an argument, a header or a body, so no code, token or secret can reach a
trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

if TYPE_CHECKING:
    from tokensvc.tracing.otel import Tracing

# The standard variables (OpenTelemetry SDK configuration): either endpoint turns tracing on.
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in ENDPOINTS)


def from_environment(
    service_name: str, env: Mapping[str, str], *, calls_out: bool = False
) -> Tracing | None:
    """A `Tracing` exporting over OTLP/HTTP when an endpoint is set, else None.
    `service_name` is the default of `OTEL_SERVICE_NAME` (`tokensvc`, `tokensvc-login`); the
    sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), headers and timeouts are the
    SDK's own variables; `calls_out`: the service sends `traceparent` to another."""
    if not enabled(env):
        return None
    from tokensvc.tracing.otel import Tracing

    return Tracing.exporting(env.get("OTEL_SERVICE_NAME") or service_name, calls_out=calls_out)


@asynccontextmanager
async def traced(
    service_name: str, env: Mapping[str, str], *, calls_out: bool = False
) -> AsyncIterator[Tracing | None]:
    """The service's `Tracing` (or None) for as long as it runs; at the end, the spans still
    queued are exported (off the event loop: the SDK's shutdown blocks)."""
    tracing = from_environment(service_name, env, calls_out=calls_out)
    try:
        yield tracing
    finally:
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)


def route_template(request: web.Request) -> str | None:
    """`/internal/clients/{client_id}`, or None for a request no route matched: what a log
    line, a metric and a span name a request by, never the path as sent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def span_middleware(tracing: Tracing | None) -> list[Middleware]:
    """What a listener runs first: the request's span when tracing is on, nothing when off."""
    return [] if tracing is None else [tracing.middleware]
