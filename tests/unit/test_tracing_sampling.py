"""The middleware's shortcut for a request that starts a trace (tokensvc.tracing.otel): it asks
the sampler itself before making a span, so its answer must be the SDK sampler's, for every
trace id, and the span it then starts must carry the id it asked about."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from tokensvc.tracing.otel import Tracing, _root_decision

SAMPLERS = {
    "parentbased_traceidratio 0.3": ParentBased(TraceIdRatioBased(0.3)),
    "traceidratio 0.01": TraceIdRatioBased(0.01),
    "parentbased_always_on": ParentBased(ALWAYS_ON),
    "parentbased_always_off": ParentBased(ALWAYS_OFF),
    "always_on": ALWAYS_ON,
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_shortcut_decides_as_the_sdk_sampler_does(name: str) -> None:
    sampler: Sampler = SAMPLERS[name]
    keeps = _root_decision(sampler)
    rng = random.Random(7)
    decisions = []
    for _ in range(5000):
        trace_id = rng.getrandbits(128) or 1
        sdk = sampler.should_sample(None, trace_id, "POST /token", SpanKind.SERVER).decision
        assert keeps(trace_id, "POST /token") == (sdk is not Decision.DROP), hex(trace_id)
        decisions.append(sdk is not Decision.DROP)
    if "0.3" in name:  # the comparison saw both answers
        assert 0.25 < sum(decisions) / len(decisions) < 0.35


def test_a_chosen_trace_id_is_the_next_root_spans_then_ids_are_random_again() -> None:
    tracing = Tracing("test", InMemorySpanExporter(), calls_out=False)
    tracing._ids.chosen = 0x1234
    first = tracing.tracer.start_span("a")
    second = tracing.tracer.start_span("b")
    assert first.get_span_context().trace_id == 0x1234
    assert second.get_span_context().trace_id not in (0, 0x1234)
