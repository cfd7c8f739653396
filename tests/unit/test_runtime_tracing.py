from urllib.parse import quote_plus

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from corrmesh.runtime import tracing
from corrmesh.runtime.tracing import (
    CORRELATION_ATTRIBUTE,
    CorrelationIdSpanProcessor,
    MeshTracerProvider,
    TraceContextStamps,
    capture_trace_context,
    event_span,
    spans_exported,
    with_correlation_id,
)
from corrmesh.v1 import event_pb2


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(CorrelationIdSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_event_span_continues_the_stored_trace_with_the_correlation_id() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("accept") as accepting:
        # As Ingest does: the accepting span's context plus the event's correlation id.
        stored = capture_trace_context(with_correlation_id("corr-42"))
    assert stored.traceparent and "correlation.id=corr-42" in stored.baggage

    event = event_pb2.Event(event_id="e1", correlation_id="corr-42", trace_context=stored)
    with event_span(tracer, "process", event):
        assert baggage.get_baggage("correlation.id") == "corr-42"
        with tracer.start_as_current_span("nested"):
            pass
    assert baggage.get_baggage("correlation.id") is None

    spans = {s.name: s for s in exporter.get_finished_spans()}
    trace_id = accepting.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    assert spans["process"].parent is not None
    assert spans["process"].parent.span_id == accepting.get_span_context().span_id
    for name in ("process", "nested"):
        attributes = spans[name].attributes or {}
        assert attributes.get(CORRELATION_ATTRIBUTE) == "corr-42"


def test_event_without_context_starts_a_new_trace() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with event_span(tracer, "process", event_pb2.Event(event_id="e2")):
        assert trace.get_current_span().get_span_context().is_valid
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.attributes is not None and CORRELATION_ATTRIBUTE not in span.attributes


def test_an_unrecorded_event_span_still_carries_the_events_trace_and_correlation_id() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("accept") as accepting:
        stored = capture_trace_context(with_correlation_id("corr-7"))
    event = event_pb2.Event(event_id="e3", correlation_id="corr-7", trace_context=stored)
    exporter.clear()

    with event_span(tracer, "process", event, record=False) as span:
        current = trace.get_current_span().get_span_context()
        # No span of its own: the accepting span's context is the current one.
        assert not span.is_recording()
        assert (current.trace_id, current.span_id) == (
            accepting.get_span_context().trace_id,
            accepting.get_span_context().span_id,
        )
        assert baggage.get_baggage("correlation.id") == "corr-7"
        # What the event causes continues its trace.
        caused = capture_trace_context()
        assert caused.traceparent == stored.traceparent
    assert baggage.get_baggage("correlation.id") is None
    assert exporter.get_finished_spans() == ()


def test_spans_count_as_exported_once_something_receives_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = MeshTracerProvider()
    monkeypatch.setattr(tracing, "_provider", provider)
    provider.add_span_processor(CorrelationIdSpanProcessor())
    assert not spans_exported()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert spans_exported()
    monkeypatch.setattr(tracing, "_provider", None)
    assert spans_exported(), "a process that did not configure tracing records as before"


AWKWARD_IDS = ["alertmanager:0a1b:1790000000.000000000", "a b", "x=y,z;q", "caf\u00e9 \u2603", ""]


def _stamped_like_capture(upstream: dict[str, str]) -> None:
    provider, _ = _provider()
    ctx = context.get_current()
    for key, value in upstream.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    try:
        with provider.get_tracer("test").start_as_current_span("accept"):
            stamps = TraceContextStamps()
            for correlation_id in AWKWARD_IDS:
                expected = capture_trace_context(with_correlation_id(correlation_id))
                assert stamps.for_correlation(correlation_id) == expected, correlation_id
    finally:
        context.detach(token)


@pytest.mark.parametrize(
    "upstream",
    [
        {},
        {"tenant": "blue team", "correlation.id": "from-upstream"},
        {"big": "v" * 5000},
    ],
    ids=["alone", "with-upstream-baggage", "long-header"],
)
def test_stamps_equal_a_full_capture_for_every_id(upstream: dict[str, str]) -> None:
    _stamped_like_capture(upstream)


def test_stamps_equal_a_full_capture_without_a_baggage_propagator() -> None:
    configured = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    try:
        _stamped_like_capture({"tenant": "blue"})
    finally:
        propagate.set_global_textmap(configured)


def test_a_stamp_carries_the_id_back_out() -> None:
    stamps = TraceContextStamps()
    for correlation_id in AWKWARD_IDS[:-1]:
        stored = stamps.for_correlation(correlation_id)
        event = event_pb2.Event(correlation_id="", trace_context=stored)
        with event_span(trace.get_tracer("test"), "process", event, record=False):
            assert baggage.get_baggage("correlation.id") == correlation_id


def test_stamps_run_the_propagators_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    inject = propagate.inject

    def counted(carrier: dict[str, str], context: object = None) -> None:
        calls.append(carrier)
        inject(carrier, context=context)  # type: ignore[arg-type]

    monkeypatch.setattr(propagate, "inject", counted)
    stamps = TraceContextStamps()
    made = {stamps.for_correlation(f"corr-{n}").baggage for n in range(50)}
    assert len(made) == 50 and len(calls) == 1


@pytest.mark.parametrize(
    "value",
    ["".join(map(chr, range(128))), "alertmanager:0a1b:17.0", "a b+c%2F", "naïve ☃", ""],
)
def test_baggage_encoding_is_quote_plus(value: str) -> None:
    assert tracing.baggage_encoded(value) == quote_plus(value)


def _traceparent_parts(stored: event_pb2.TraceContext) -> list[str]:
    return stored.traceparent.split("-")  # version, trace id, span id, flags


def test_an_unrecorded_entry_starts_a_sampled_trace_of_its_own() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    stored = []
    for correlation_id in ("assoc-1", "assoc-1"):
        with tracing.entry_span(
            tracer, "dicom.c_store", with_correlation_id(correlation_id), record=False
        ) as span:
            assert not span.is_recording()
            stored.append(capture_trace_context())
    assert exporter.get_finished_spans() == ()
    first, second = (_traceparent_parts(s) for s in stored)
    assert first[3] == second[3] == "01"
    assert first[1] != second[1] and int(first[1], 16) and int(first[2], 16)
    assert "correlation.id=assoc-1" in stored[0].baggage
    # Outside the block the context is what it was.
    assert not trace.get_current_span().get_span_context().is_valid


def test_an_unrecorded_entry_keeps_the_callers_trace() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("alertmanager.notify"):
        headers: dict[str, str] = {}
        propagate.inject(headers)
    parent = propagate.extract(headers)
    with tracing.entry_span(tracer, "alertmanager.webhook", parent, record=False):
        stored = capture_trace_context()
    assert stored.traceparent == headers["traceparent"]
    assert [s.name for s in exporter.get_finished_spans()] == ["alertmanager.notify"]


def test_a_recorded_entry_is_a_server_span_under_the_caller() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("alertmanager.notify") as calling:
        headers: dict[str, str] = {}
        propagate.inject(headers)
    with tracing.entry_span(tracer, "alertmanager.webhook", propagate.extract(headers)):
        stored = capture_trace_context()
    accepted = exporter.get_finished_spans()[-1]
    assert accepted.name == "alertmanager.webhook" and accepted.kind == trace.SpanKind.SERVER
    assert accepted.parent is not None
    assert accepted.parent.span_id == calling.get_span_context().span_id
    assert _traceparent_parts(stored)[2] == format(accepted.context.span_id, "016x")
