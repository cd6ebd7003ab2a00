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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import version
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry.context import attach, detach
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tokensvc.instrumented import Method, wrap_public_coroutines
from tokensvc.tracing import route_template

S = TypeVar("S")
_TRACED = "_tokensvc_traced"  # set on a store whose calls are already spans
W3C = TraceContextTextMapPropagator()  # `traceparent` only: no baggage from callers
ERROR = Status(StatusCode.ERROR)
# Whether the current request's span records: what a store call checks before making a span of
# its own (one lookup, where asking OpenTelemetry for the current span is four calls).
RECORDING: ContextVar[bool] = ContextVar("tokensvc_span_recording", default=False)
# Which database a store talks to, from its class's name (RedisCodes, PostgresGrants...).
_SYSTEMS = (("Redis", "redis"), ("Postgres", "postgresql"), ("Memory", "memory"))


class ChosenTraceIds(RandomIdGenerator):
    """The SDK's random ids, except a trace id the middleware drew itself to ask the sampler
    before starting a span: the span it then starts gets that id, so the decision holds."""

    chosen = 0

    def generate_trace_id(self) -> int:
        trace_id, self.chosen = self.chosen, 0
        return trace_id or super().generate_trace_id()


class Tracing:
    def __init__(self, service_name: str, exporter: SpanExporter, *, calls_out: bool) -> None:
        """`calls_out`: the service calls others with `traceparent` (the login front-end), so
        even an unsampled request keeps a context, whose decision its calls carry on."""
        resource = Resource.create({SERVICE_NAME: service_name})
        self._ids = ChosenTraceIds()
        # No sampler given: the SDK reads OTEL_TRACES_SAMPLER (default parentbased_always_on).
        self.provider = TracerProvider(resource=resource, id_generator=self._ids)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("tokensvc", version("tokensvc"))
        self._keeps_root = _root_decision(self.provider.sampler)
        self._skip_dropped_roots = not calls_out

    @classmethod
    def exporting(cls, service_name: str, *, calls_out: bool) -> Tracing:
        """Spans exported over OTLP/HTTP (protobuf) to the endpoint of the environment."""
        return cls(service_name, OTLPSpanExporter(), calls_out=calls_out)

    def shutdown(self) -> None:
        """Export what is still queued (blocking: call it off the event loop)."""
        self.provider.shutdown()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The request's SERVER span: the first middleware of every listener, so that the
        status it records is the one sent (errors already turned into responses). Spelled
        out rather than `start_as_current_span`: an unsampled request, 99% of them at a 1%
        sampler, then costs a span start and a context switch, about half as much.

        A request that starts a trace (no `traceparent`) at a service that calls nobody asks
        the sampler first, with a trace id drawn here: when it drops the trace, no span is made
        at all (a span nobody records, 99% of requests at a 1% sampler, would cost /token a
        tenth of its throughput in Python calls); when it keeps it, the span gets that id."""
        route = route_template(request)
        name = f"{request.method} {route}" if route else request.method
        if self._skip_dropped_roots and "traceparent" not in request.headers:
            trace_id = self._ids.generate_trace_id()
            if not self._keeps_root(trace_id, name):
                return await handler(request)  # dropped: nothing to record or pass on
            self._ids.chosen = trace_id
        parent = W3C.extract(request.headers)
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        recording = span.is_recording()
        if recording:
            span.set_attributes({"http.request.method": request.method, "http.route": route or ""})
        token = attach(set_span_in_context(span, parent))  # store calls and outgoing calls
        recorded = RECORDING.set(recording)
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
            RECORDING.reset(recorded)
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
                if not RECORDING.get():
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


def _root_decision(sampler: Sampler) -> Callable[[int, str], bool]:
    """Whether `sampler` keeps a trace started here (no parent) with a given trace id: what
    the SDK would decide, answered in one comparison for the usual samplers (a ratio, always
    on or off, each behind ParentBased, which defers to its root when there is no parent)."""
    root = getattr(sampler, "_root", sampler) if isinstance(sampler, ParentBased) else sampler
    if isinstance(root, TraceIdRatioBased):
        bound, limit = root.bound, TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda trace_id, _: (trace_id & limit) < bound

    def decide(trace_id: int, name: str) -> bool:
        result = root.should_sample(None, trace_id, name, SpanKind.SERVER)
        return result.decision is not Decision.DROP

    return decide


def _answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(ERROR)


def _system(class_name: str) -> str:
    return next((s for prefix, s in _SYSTEMS if class_name.startswith(prefix)), "other")
