"""An OTLP/HTTP trace receiver on loopback: the collector a deployment would run, for the
tracing tests. It decodes each `ExportTraceServiceRequest` (protobuf, as the SDK's exporter
sends it) into `ReceivedSpan`s, keeping every attribute, event and resource value so that a
test can scan all of it for secrets."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KINDS = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str  # server, client or other
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    error: bool
    # everything else the span carries, for the secret scan: resource, events, links, status
    extra: tuple[str, ...]

    def strings(self) -> Iterator[str]:
        yield self.service
        yield self.name
        yield from _strings(self.attributes)
        yield from self.extra


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
    elif value is not None:
        yield str(value)


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                extra = [*_strings(resource), span.status.message, span.trace_state]
                for event in span.events:
                    extra += [event.name, *_strings(_attributes(event.attributes))]
                for link in span.links:
                    extra += list(_strings(_attributes(link.attributes)))
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "other"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                        error=span.status.code == Status.STATUS_CODE_ERROR,
                        extra=tuple(extra),
                    )
                )
    return spans


class OtlpReceiver:
    """`POST /v1/traces` on a free loopback port, served from a thread."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                spans = decode(body)
                with receiver._lock:
                    receiver._spans.extend(spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it (the SDK adds /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self, service: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if service is None or s.service == service]

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], Any], what: str, timeout: float = 10.0
    ) -> Any:
        """The first truthy `found(spans)`, polling until `timeout`; fails naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = found(self.spans())
            if value:
                return value
            if time.monotonic() > deadline:
                names = sorted({(s.service, s.name) for s in self.spans()})
                raise AssertionError(f"no {what} within {timeout}s; received {names}")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
