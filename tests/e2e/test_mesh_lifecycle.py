"""The four servers as separate processes: health, reflection, graceful SIGTERM."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from corrmesh.cli.mesh import Mesh, health_status
from corrmesh.runtime.settings import SERVICES
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.e2e

SERVICE_NAMES = {
    "ingest": "corrmesh.v1.IngestService",
    "correlation": "corrmesh.v1.CorrelationService",
    "topology": "corrmesh.v1.TopologyService",
    "spanner": "corrmesh.v1.SpannerService",
}


@pytest.fixture
def own_mesh(tmp_path: Path) -> Iterator[Mesh]:
    with Mesh.on_free_ports(tmp_path / "mesh") as mesh:
        yield mesh


def test_every_server_reports_health_and_reflection(mesh: Mesh) -> None:
    for service in SERVICES:
        address = mesh.address(service)
        assert health_status(address) == "SERVING"
        assert health_status(address, SERVICE_NAMES[service]) == "SERVING"
        with grpc.insecure_channel(address) as channel:
            names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {SERVICE_NAMES[service], "grpc.health.v1.Health"} <= names


def test_correlation_is_not_serving_while_ingest_is_down(own_mesh: Mesh) -> None:
    own_mesh.stop_service("ingest")
    assert _eventually(lambda: health_status(own_mesh.address("correlation")) == "NOT_SERVING")
    own_mesh.start_service("ingest")
    own_mesh.wait_serving(60, services=("ingest", "correlation"))


def test_sigterm_ends_open_streams_cleanly_and_exits_zero(own_mesh: Mesh) -> None:
    outcomes: dict[str, grpc.StatusCode | None] = {}
    opened = threading.Barrier(3)

    def hold(name: str, address: str, open_stream: object) -> None:
        with grpc.insecure_channel(address) as channel:
            stream = open_stream(channel)  # type: ignore[operator]
            # The server sends headers once its handler runs: the stream is really open
            # before the services are told to stop.
            stream.initial_metadata()
            opened.wait(10)
            try:
                for _ in stream:
                    pass
                outcomes[name] = grpc.StatusCode.OK
            except grpc.RpcError as error:
                outcomes[name] = error.code()

    threads = [
        threading.Thread(
            target=hold,
            args=(
                "subscribe",
                own_mesh.address("ingest"),
                lambda ch: ingest_pb2_grpc.IngestServiceStub(ch).Subscribe(
                    ingest_pb2.SubscribeRequest()
                ),
            ),
        ),
        threading.Thread(
            target=hold,
            args=(
                "watch",
                own_mesh.address("correlation"),
                lambda ch: correlation_pb2_grpc.CorrelationServiceStub(ch).WatchGroups(
                    correlation_pb2.WatchGroupsRequest()
                ),
            ),
        ),
    ]
    for thread in threads:
        thread.start()
    opened.wait(10)

    assert own_mesh.stop_service("correlation") == 0
    assert own_mesh.stop_service("ingest") == 0
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    # Drained: the server ended each stream itself instead of the connection dying.
    assert outcomes == {"subscribe": grpc.StatusCode.OK, "watch": grpc.StatusCode.OK}


def _eventually(check: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_a_port_taken_before_its_service_binds_it_means_new_ports(tmp_path: Path) -> None:
    """Between picking a free port and binding it, any process may take it (an
    outgoing connection's ephemeral port): the mesh starts again on new ones."""
    mesh = Mesh.on_free_ports(tmp_path / "mesh", env={"OTEL_TRACES_EXPORTER": "none"})
    taken = mesh.ports["spanner"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with mesh:
            assert mesh.ports["spanner"] != taken
            assert health_status(mesh.address("spanner")) == "SERVING"
            assert mesh.env["OTEL_TRACES_EXPORTER"] == "none"  # the caller's settings stay
    assert "Address already in use" in (tmp_path / "mesh" / "spanner.log").read_text()
