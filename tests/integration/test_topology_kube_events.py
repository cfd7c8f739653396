"""Kubernetes Events published to a real Ingest: fields, idempotence, own traces."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corrmesh.correlation.server import CorrelationApp
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, configure_tracing, context_of
from corrmesh.topology.kube.events import EventPublisher, to_event
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, event_pb2, ingest_pb2_grpc
from tests.support.correlation_mesh import poll, watch
from tests.support.ingest import all_events
from tests.support.inprocess import running
from tests.support.topology import topology_server
from tests.support.topology_kube_server import (
    kube_clusters_setting,
    load_recorded,
    loopback_apiserver,
)

EVENTS = "/api/v1/events"


def recorded_event() -> dict[str, object]:
    (event,) = load_recorded()["collections"][EVENTS]
    return copy.deepcopy(event)


async def test_each_event_is_published_once_in_a_trace_of_its_own(database_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    backoff = recorded_event()
    repeated = copy.deepcopy(backoff)
    repeated["count"] = 4
    repeated["lastTimestamp"] = "2026-11-01T12:05:00Z"
    events = [to_event("prod", obj) for obj in (backoff, repeated, backoff)]
    async with (
        running(IngestApp, "ingest", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        publisher = EventPublisher(channel, provider.get_tracer("test"))
        publisher.start()
        try:
            publisher.submit(e for e in events if e is not None)
            await asyncio.wait_for(publisher.flushed(), 10)
        finally:
            await publisher.stop()
        stored = await all_events(ingest_pb2_grpc.IngestServiceStub(channel))
    # The third is the first again (a relist delivers every Event anew): stored once.
    # Published concurrently, so in any order; correlation runs on event time.
    stored.sort(key=lambda e: e.kubernetes.count)
    assert [e.kubernetes.count for e in stored] == [3, 4]
    first = stored[0]
    assert first.domain == event_pb2.DOMAIN_KUBERNETES
    assert first.type == "BackOff" and first.severity == event_pb2.SEVERITY_WARNING
    assert (first.resource.cluster, first.resource.kind) == ("prod", "Pod")
    assert first.resource.name == "payment-5d9c7-0"
    assert first.kubernetes.first_timestamp.ToJsonString() == "2026-11-01T11:58:00Z"
    assert first.occurred_at == first.kubernetes.last_timestamp
    assert first.kubernetes.reporting_component == "kubelet"
    spans = exporter.get_finished_spans()
    assert len(spans) == 3 and all(span.parent is None for span in spans)
    assert len({span.context.trace_id for span in spans}) == 3


async def test_topology_publishes_the_clusters_events(database_url: str, tmp_path: Path) -> None:
    with loopback_apiserver() as loopback:
        setting = kube_clusters_setting(tmp_path, {"prod": loopback.url})
        async with (
            running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'i.db'}") as (
                _ingest,
                address,
            ),
            grpc.aio.insecure_channel(address) as channel,
            topology_server(database_url, kube_clusters=setting, ingest_address=address) as (
                app,
                _stub,
            ),
        ):
            assert app.kube is not None and app.events is not None
            await app.kube.wait_until({"synced"}, 20)
            await asyncio.wait_for(app.events.flushed(), 10)
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            assert [e.type for e in await all_events(stub)] == ["BackOff"]
            # A relist delivers the same Event again; Ingest keeps it once.
            loopback.rewrite(EVENTS, [recorded_event()])
            warning = recorded_event()
            warning["metadata"] = {
                "name": "worker-2.nodenotready",
                "namespace": "default",
                "uid": "9a0c2b1e-2f4d-4c55-9e0b-0d9f4a6b7c8d",
            }
            warning["involvedObject"] = {"kind": "Node", "name": "worker-2", "uid": "n-2"}
            warning["reason"] = "NodeNotReady"
            loopback.apply(EVENTS, warning)

            async def both() -> bool:
                await app.events.flushed() if app.events else None
                return len(await all_events(stub)) >= 2

            deadline = asyncio.get_running_loop().time() + 10
            while not await both():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            stored = await all_events(stub)
            assert sorted(e.type for e in stored) == ["BackOff", "NodeNotReady"]
            node = next(e for e in stored if e.type == "NodeNotReady")
            assert (node.resource.kind, node.resource.name, node.resource.namespace) == (
                "Node",
                "worker-2",
                "",
            )


def _trace_id(trace_context: event_pb2.TraceContext) -> int:
    """The trace id of a stored W3C context (0 when there is none)."""
    span = trace.get_current_span(context_of(trace_context))
    return span.get_span_context().trace_id


async def test_correlation_id_and_trace_survive_the_hop_to_ingest_and_correlation(
    database_url: str, tmp_path: Path
) -> None:
    # The process-wide provider, as the three servers in this process use it.
    exporter = InMemorySpanExporter()
    configure_tracing("topology").add_span_processor(SimpleSpanProcessor(exporter))
    repeated = recorded_event()
    repeated["count"] = 4
    repeated["lastTimestamp"] = "2026-11-01T12:00:30Z"
    with loopback_apiserver() as loopback:
        setting = kube_clusters_setting(tmp_path, {"prod": loopback.url})
        async with (
            running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'i.db'}") as (
                _ingest,
                ingest_address,
            ),
            running(
                TopologyApp,
                "topology",
                database_url=f"sqlite:///{tmp_path / 't.db'}",
                kube_clusters=setting,
                ingest_address=ingest_address,
            ) as (topology, topology_address),
            running(
                CorrelationApp,
                "correlation",
                database_url=database_url,
                ingest_address=ingest_address,
                topology_address=topology_address,
            ) as (_correlation, correlation_address),
            grpc.aio.insecure_channel(ingest_address) as ingest_channel,
            grpc.aio.insecure_channel(correlation_address) as correlation_channel,
        ):
            assert isinstance(topology, TopologyApp)
            assert topology.kube is not None and topology.events is not None
            await topology.kube.wait_until({"synced"}, 20)
            # The same Event once more, one repeat later (count 4): a new event.
            loopback.apply(EVENTS, repeated)
            ingest = ingest_pb2_grpc.IngestServiceStub(ingest_channel)

            async def both_stored() -> bool:
                return len(await all_events(ingest)) == 2

            await poll(both_stored)
            stored = await all_events(ingest)
            updates, _through = await watch(
                correlation_pb2_grpc.CorrelationServiceStub(correlation_channel),
                correlation_pb2.WatchGroupsRequest(),
                lambda got, _t: any(stored[-1].event_id in u.event_ids for u in got),
            )

    publish_spans = {
        span.attributes.get("corrmesh.event_id"): span
        for span in exporter.get_finished_spans()
        if span.name == "topology.kubernetes_event" and span.attributes is not None
    }
    for event in stored:
        # Topology named the correlation id before the hop; Ingest kept it and
        # stored the trace the publishing span began.
        span = publish_spans[event.event_id]
        assert span.attributes is not None
        assert span.attributes[CORRELATION_ATTRIBUTE] == event.correlation_id
        assert _trace_id(event.trace_context) == span.context.trace_id
        assert f"correlation.id={event.correlation_id}" in event.trace_context.baggage
    # The repeats of one Event are one story: one correlation id, two traces.
    assert len({e.correlation_id for e in stored}) == 1 and stored[0].correlation_id
    assert stored[0].trace_context.traceparent != stored[1].trace_context.traceparent
    # Correlation analyses in log order: the later event made the group, and the
    # update carries that event's trace and correlation id.
    (update,) = [u for u in updates if stored[-1].event_id in u.event_ids]
    causing = stored[-1]
    assert _trace_id(update.trace_context) == publish_spans[causing.event_id].context.trace_id
    assert f"correlation.id={causing.correlation_id}" in update.trace_context.baggage
    assert {m.event_id for m in update.group.members} == {e.event_id for e in stored}
