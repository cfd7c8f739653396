"""Bearer tokens with scopes, TLS and mutual TLS, on a real server over loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.server import ServiceApp
from corrmesh.runtime.settings import Settings
from corrmesh.v1 import topology_pb2, topology_pb2_grpc
from tests.support.certs import make_certificates
from tests.support.inprocess import running


class BareTopology(ServiceApp):
    """The generated base servicer: every method answers UNIMPLEMENTED once auth lets it in."""

    service_names = ("corrmesh.v1.TopologyService",)

    def register(self, server: grpc.aio.Server) -> None:
        topology_pb2_grpc.add_TopologyServiceServicer_to_server(
            topology_pb2_grpc.TopologyServiceServicer(),  # type: ignore[abstract]
            server,
        )


async def _code_of(call: object) -> grpc.StatusCode:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens"
    path.write_text(
        "# token scopes subject\nreader-token read viewer\nwriter-token read,write ops\n"
    )
    return str(path)


async def test_tokens_and_scopes(tokens_file: str) -> None:
    async with running(BareTopology, "topology", auth_tokens_file=tokens_file) as (_, address):

        async def codes(token: str | None) -> tuple[grpc.StatusCode, ...]:
            settings = Settings(service="topology", client_token=token or "")
            async with open_channel(address, settings, traced=False) as channel:
                stub = topology_pb2_grpc.TopologyServiceStub(channel)
                return (
                    await _code_of(stub.GetResource(topology_pb2.GetResourceRequest())),
                    await _code_of(
                        stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest())
                    ),
                    await _code_of(stub.WatchTopology(topology_pb2.WatchTopologyRequest())),
                )

        unimplemented = grpc.StatusCode.UNIMPLEMENTED
        assert await codes(None) == (grpc.StatusCode.UNAUTHENTICATED,) * 3
        assert await codes("forged") == (grpc.StatusCode.UNAUTHENTICATED,) * 3
        assert await codes("reader-token") == (
            unimplemented,
            grpc.StatusCode.PERMISSION_DENIED,
            unimplemented,
        )
        assert await codes("writer-token") == (unimplemented,) * 3

        # Health stays open for probes.
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_auth_can_be_switched_off(tokens_file: str) -> None:
    async with (
        running(BareTopology, "topology", auth_tokens_file=tokens_file, auth_disabled=True) as (
            _,
            address,
        ),
        open_channel(address, traced=False) as channel,
    ):
        stub = topology_pb2_grpc.TopologyServiceStub(channel)
        code = await _code_of(stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest()))
        assert code == grpc.StatusCode.UNIMPLEMENTED


async def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    server_tls = {"tls_cert_file": str(certs.server_cert), "tls_key_file": str(certs.server_key)}

    async with running(BareTopology, "topology", **server_tls) as (_, address):
        # A CA-verifying client gets through; a plaintext client does not.
        client = Settings(service="correlation", tls_ca_file=str(certs.ca))
        async with open_channel(address, client, traced=False) as channel:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            assert await _code_of(stub.GetResource(topology_pb2.GetResourceRequest())) == (
                grpc.StatusCode.UNIMPLEMENTED
            )
        async with open_channel(address, traced=False) as channel:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            call = stub.GetResource(topology_pb2.GetResourceRequest(), timeout=3)
            assert await _code_of(call) == grpc.StatusCode.UNAVAILABLE

    mutual = {**server_tls, "tls_client_ca_file": str(certs.ca)}
    async with running(BareTopology, "topology", **mutual) as (_, address):
        without_cert = Settings(service="correlation", tls_ca_file=str(certs.ca))
        async with open_channel(address, without_cert, traced=False) as channel:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            call = stub.GetResource(topology_pb2.GetResourceRequest(), timeout=3)
            assert await _code_of(call) == grpc.StatusCode.UNAVAILABLE
        with_cert = Settings(
            service="correlation",
            tls_ca_file=str(certs.ca),
            tls_cert_file=str(certs.client_cert),
            tls_key_file=str(certs.client_key),
        )
        async with open_channel(address, with_cert, traced=False) as channel:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            assert await _code_of(stub.GetResource(topology_pb2.GetResourceRequest())) == (
                grpc.StatusCode.UNIMPLEMENTED
            )


async def test_health_watch_streams_status() -> None:
    async with (
        running(BareTopology, "topology") as (_, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="corrmesh.v1.TopologyService")
        )
        statuses = [(await asyncio.wait_for(stream.read(), 5)).status]
        if statuses[0] != health_pb2.HealthCheckResponse.SERVING:
            # Right after start the first answer may still be NOT_SERVING.
            statuses.append((await asyncio.wait_for(stream.read(), 5)).status)
        assert statuses[-1] == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()
