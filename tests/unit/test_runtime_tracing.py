import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corrmesh.runtime import tracing
from corrmesh.runtime.tracing import (
    CORRELATION_ATTRIBUTE,
    CorrelationIdSpanProcessor,
    MeshTracerProvider,
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
