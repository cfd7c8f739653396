"""One trace from the publishing client through Ingest, Correlation and Topology.

The four services run as separate processes and export with the real
OTLP/gRPC exporter to a receiver this test runs on loopback.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from corrmesh.cli.mesh import Mesh
from corrmesh.runtime.tracing import (
    CORRELATION_ATTRIBUTE,
    CorrelationIdSpanProcessor,
    with_correlation_id,
)
from corrmesh.v1 import (
    correlation_pb2,
    correlation_pb2_grpc,
    event_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    topology_pb2,
    topology_pb2_grpc,
)
from tests.support.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e

SERVICES = ("e2e-client", "corrmesh-ingest", "corrmesh-correlation", "corrmesh-topology")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    yield otlp
    otlp.stop()


@pytest.fixture
def traced_mesh(tmp_path: Path, receiver: OtlpReceiver) -> Iterator[Mesh]:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with Mesh.on_free_ports(tmp_path / "mesh", env=env) as mesh:
        yield mesh


def _deployment(name: str) -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(kind="Deployment", namespace="shop", name=name)


def _event(
    resource: str, title: str, fingerprint: str, correlation_id: str = ""
) -> event_pb2.Event:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return event_pb2.Event(
        domain=event_pb2.DOMAIN_KUBERNETES,
        source="kubernetes/e2e",
        resource=_deployment(resource),
        occurred_at=now,
        severity=event_pb2.SEVERITY_ERROR,
        title=title,
        fingerprint=fingerprint,
        correlation_id=correlation_id,
    )


async def test_one_trace_spans_client_ingest_correlation_and_topology(
    traced_mesh: Mesh, receiver: OtlpReceiver
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-client"}))
    provider.add_span_processor(CorrelationIdSpanProcessor())
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True))
    )
    tracer = provider.get_tracer("e2e")
    interceptors = aio_client_interceptors(tracer_provider=provider)

    async with (
        grpc.aio.insecure_channel(
            traced_mesh.address("ingest"), interceptors=interceptors
        ) as ingest,
        grpc.aio.insecure_channel(traced_mesh.address("topology")) as topology,
        grpc.aio.insecure_channel(traced_mesh.address("correlation")) as correlation,
    ):
        dependency = topology_pb2.Dependency(to=_deployment("mysql"))
        getattr(dependency, "from").CopyFrom(_deployment("api"))
        await topology_pb2_grpc.TopologyServiceStub(topology).UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(dependencies=[dependency])
        )
        publisher = ingest_pb2_grpc.IngestServiceStub(ingest)
        # An earlier event on mysql, so the traced one has a candidate whose
        # relation Correlation must ask Topology about.
        await publisher.Publish(
            ingest_pb2.PublishRequest(events=[_event("mysql", "OOMKilled mysql", "fp-mysql")])
        )

        correlation_id = f"corr-{uuid.uuid4()}"
        token = otel_context.attach(with_correlation_id(correlation_id))
        try:
            with tracer.start_as_current_span("publish checkout failure") as root:
                reply = await publisher.Publish(
                    ingest_pb2.PublishRequest(
                        events=[
                            _event(
                                "api",
                                "Readiness probe failed: mysql refused connection",
                                "fp-api",
                                correlation_id=correlation_id,
                            )
                        ]
                    )
                )
        finally:
            otel_context.detach(token)
        trace_id = format(root.get_span_context().trace_id, "032x")
        (result,) = reply.results
        assert result.correlation_id == correlation_id
        assert not result.HasField("error")

        stats_stub = correlation_pb2_grpc.CorrelationServiceStub(correlation)
        deadline = time.monotonic() + 20
        while (
            await stats_stub.GetStats(correlation_pb2.GetStatsRequest())
        ).consumer_sequence < result.sequence:
            assert time.monotonic() < deadline, "Correlation did not consume the event"
            await asyncio.sleep(0.1)
    provider.shutdown()

    def covered(spans: list[ReceivedSpan]) -> bool:
        services = {s.service for s in spans if s.trace_id == trace_id}
        return set(SERVICES) <= services

    spans = [s for s in receiver.wait_for(covered) if s.trace_id == trace_id]
    by_service: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_service.setdefault(span.service, []).append(span)
    assert set(SERVICES) <= set(by_service), f"services in the trace: {sorted(by_service)}"

    for service in SERVICES:
        for span in by_service[service]:
            assert span.attributes.get(CORRELATION_ATTRIBUTE) == correlation_id, (
                f"{service} span {span.name!r} lacks the correlation id: {span.attributes}"
            )
    # The event was processed from the stream, not within the Publish call:
    # Correlation continued the trace that Ingest stored on the event.
    analyze = [s for s in by_service["corrmesh-correlation"] if s.name == "correlation.analyze"]
    assert analyze, [s.name for s in by_service["corrmesh-correlation"]]
    ingest_span_ids = {s.span_id for s in by_service["corrmesh-ingest"]}
    assert analyze[0].parent_span_id in ingest_span_ids
    assert any(s.name.endswith("RelateResources") for s in by_service["corrmesh-topology"]), [
        s.name for s in by_service["corrmesh-topology"]
    ]
