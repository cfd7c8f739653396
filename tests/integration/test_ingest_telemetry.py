"""Ingest's traces and metrics: the accepting span, event-carried context, the counter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import get_current_span

from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.tracing import CORRELATION_BAGGAGE_KEY, configure_tracing, context_of
from corrmesh.v1 import ingest_pb2
from tests.support.ingest import ingest_server, make_event

PUBLISH_SPAN = "/corrmesh.v1.IngestService/Publish"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test (the process-wide provider is set up once)."""
    exporter = InMemorySpanExporter()
    configure_tracing("ingest").add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # stops collecting; the processor stays but stores nothing


def _server_spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_accepted_events_carry_the_publish_span_context(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    async with ingest_server(database_url) as (_app, stub):
        shared = await stub.Publish(
            ingest_pb2.PublishRequest(
                events=[make_event(correlation_id="cid-1"), make_event(1, correlation_id="cid-1")]
            )
        )
        mixed = await stub.Publish(
            ingest_pb2.PublishRequest(events=[make_event(2), make_event(3), make_event(title="")])
        )
        stored = [
            (await stub.GetEvent(ingest_pb2.GetEventRequest(event_id=r.event_id))).event
            for r in (*shared.results, mixed.results[0])
        ]
        # Large enough to be checked in a worker thread: same span, same rules.
        await stub.Publish(ingest_pb2.PublishRequest(events=[make_event(i) for i in range(100)]))
        large = (await stub.ListEvents(ingest_pb2.ListEventsRequest(page_size=200))).events[4:]

    first_span, second_span, large_span = _server_spans(spans, PUBLISH_SPAN)
    assert first_span.attributes is not None and second_span.attributes is not None
    assert first_span.attributes["corrmesh.correlation_id"] == "cid-1"
    assert first_span.attributes["corrmesh.events_accepted"] == 2
    # Two events with their own ids: no single correlation id to record.
    assert "corrmesh.correlation_id" not in second_span.attributes
    assert second_span.attributes["corrmesh.events_accepted"] == 2

    assert large_span.attributes is not None
    assert large_span.attributes["corrmesh.events_accepted"] == 100
    assert len({e.correlation_id for e in large}) == 100
    checks = [(stored[0], first_span), (stored[2], second_span)]
    checks += [(event, large_span) for event in large]
    for event, span in checks:
        ctx = context_of(event.trace_context)
        parent = get_current_span(ctx).get_span_context()
        assert parent.trace_id == span.context.trace_id
        assert parent.span_id == span.context.span_id
        assert baggage.get_baggage(CORRELATION_BAGGAGE_KEY, ctx) == event.correlation_id
    # No span per event: one server span per call (3 Publish, 3 GetEvent, 1 ListEvents).
    assert len(spans.get_finished_spans()) == 7


class _MeteredIngest(IngestApp):
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])


def _ingested_total() -> int:
    data = _MeteredIngest.reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "corrmesh_events_ingested_total":
                    total += sum(int(p.value) for p in metric.data.data_points)  # type: ignore[union-attr, misc]
    return total


async def test_ingested_counter_counts_stored_events(database_url: str) -> None:
    before = _ingested_total()
    async with ingest_server(database_url, _MeteredIngest) as (_app, stub):
        await stub.Publish(
            ingest_pb2.PublishRequest(
                events=[make_event(event_id="a"), make_event(event_id="b"), make_event(title="")]
            )
        )
        await stub.Publish(ingest_pb2.PublishRequest(events=[make_event(event_id="a")]))
    # Two stored; the rejected event and the duplicate are not ingested.
    assert _ingested_total() - before == 2
