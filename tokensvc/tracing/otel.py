"""The OpenTelemetry side of `tokensvc.tracing`, imported only when tracing is on.

One `Tracing` per service (the token service and the login front-end each have their own
provider, also when `tokensvc dev` runs both in one process); nothing is global. Spans:

* one SERVER span per request, named `METHOD /route/{template}` (OpenTelemetry HTTP
  semantic conventions), continuing a W3C `traceparent` the caller sent;
* one CLIENT span per store call (`codes.consume`, `refresh.rotate`), a child of the request's
  span, made only when that span is sampled;
* one CLIENT span per call of the login front-end to the internal API, whose `traceparent`
  it sends, so one sign-in is one trace across both services.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry.context import attach, detach
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tokensvc.instrumented import Method, wrap_public_coroutines

S = TypeVar("S")
_TRACED = "_tokensvc_traced"  # set on a store whose calls are already spans
W3C = TraceContextTextMapPropagator()  # `traceparent` only: no baggage from callers
ERROR = Status(StatusCode.ERROR)
# Which database a store talks to, from its class's name (RedisCodes, PostgresGrants...).
_SYSTEMS = (("Redis", "redis"), ("Postgres", "postgresql"), ("Memory", "memory"))


class Tracing:
    def __init__(self, service_name: str, exporter: SpanExporter) -> None:
        resource = Resource.create({SERVICE_NAME: service_name})
        # No sampler given: the SDK reads OTEL_TRACES_SAMPLER (default parentbased_always_on).
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("tokensvc", version("tokensvc"))

    @classmethod
    def exporting(cls, service_name: str) -> Tracing:
        """Spans exported over OTLP/HTTP (protobuf) to the endpoint of the environment."""
        return cls(service_name, OTLPSpanExporter())

    def shutdown(self) -> None:
        """Export what is still queued (blocking: call it off the event loop)."""
        self.provider.shutdown()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The request's SERVER span: the first middleware of every listener, so that the
        status it records is the one sent (errors already turned into responses). Spelled
        out rather than `start_as_current_span`: an unsampled request, 99% of them at a 1%
        sampler, then costs a span start and a context switch, about half as much."""
        route = route_template(request)
        parent = W3C.extract(request.headers)
        span = self.tracer.start_span(
            f"{request.method} {route}" if route else request.method,
            context=parent,
            kind=SpanKind.SERVER,
        )
        recording = span.is_recording()
        if recording:
            span.set_attributes({"http.request.method": request.method, "http.route": route or ""})
        token = attach(set_span_in_context(span, parent))  # store calls and outgoing calls
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects are raised by the login views
            if recording:
                _answered(span, exc.status)
            raise
        except BaseException:  # never its message: an exception's text may quote the input
            if recording:
                span.set_status(ERROR)
            raise
        else:
            if recording:
                _answered(span, response.status)
            return response
        finally:
            detach(token)
            span.end()

    def trace_calls(self, store: S, store_name: str) -> S:
        """The same store, each public coroutine method a CLIENT span `store.method` when the
        current span is sampled (an unsampled request costs one check per call)."""
        system = _system(type(store).__name__)
        tracer = self.tracer

        def wrap(operation: str, method: Method) -> Method:
            name = f"{store_name}.{operation}"
            attributes = {
                "db.system.name": system,
                "db.operation.name": operation,
                "tokensvc.store": store_name,
            }

            async def traced(*args: object, **kwargs: object) -> object:
                if not get_current_span().is_recording():
                    return await method(*args, **kwargs)
                with tracer.start_as_current_span(
                    name,
                    kind=SpanKind.CLIENT,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    try:
                        return await method(*args, **kwargs)
                    except BaseException:
                        span.set_status(ERROR)
                        raise

            return traced

        return wrap_public_coroutines(store, _TRACED, wrap)

    @contextmanager
    def outgoing(self, method: str, route: str) -> Iterator[OutgoingCall]:
        """A CLIENT span for an HTTP call to another of our services; the call sends
        `headers` (its `traceparent`) and reports the status it got with `answered`."""
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.template": route},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = OutgoingCall(span)
            W3C.inject(call.headers)
            try:
                yield call
            except BaseException:
                span.set_status(ERROR)
                raise


class OutgoingCall:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.headers: dict[str, str] = {}

    def answered(self, status: int) -> None:
        _answered(self.span, status)


def route_template(request: web.Request) -> str | None:
    """`/internal/clients/{client_id}`, or None for a request no route matched."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def _answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(ERROR)


def _system(class_name: str) -> str:
    return next((s for prefix, s in _SYSTEMS if class_name.startswith(prefix)), "other")
