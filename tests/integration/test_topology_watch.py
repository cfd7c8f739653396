"""WatchTopology: resume from a sequence, follow live, filter, and end at shutdown."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology import dependency, ref, service, topology_server

if TYPE_CHECKING:
    from corrmesh.v1.topology_pb2_grpc import TopologyServiceAsyncStub

C = topology_pb2.ChangeType
CHAIN = [
    dependency(service("frontend"), service("api"), "HTTP"),
    dependency(service("api"), ref("Deployment", "mysql"), "SQL"),
]


def summary(change: topology_pb2.TopologyChange) -> tuple[int, str, str]:
    """(sequence, type, what) for readable assertions."""
    kind = C.Name(change.type).removeprefix("CHANGE_TYPE_")
    if change.HasField("edge"):
        return (
            change.sequence,
            kind,
            f"{getattr(change.edge, 'from').name}->{change.edge.to.name}",
        )
    return (change.sequence, kind, change.resource.ref.name)


async def take(
    stub: TopologyServiceAsyncStub,
    request: topology_pb2.WatchTopologyRequest,
    count: int,
) -> list[topology_pb2.TopologyChange]:
    """The first ``count`` changes the stream sends (fails after 10 s)."""
    call = stub.WatchTopology(request)
    changes: list[topology_pb2.TopologyChange] = []

    async def read() -> None:
        async for response in call:
            changes.extend(response.changes)
            if len(changes) >= count:
                return

    try:
        await asyncio.wait_for(read(), 10)
    finally:
        call.cancel()
    return changes


async def test_resume_from_a_sequence_then_follow_live(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN))

        everything = await take(stub, topology_pb2.WatchTopologyRequest(), 5)
        assert [summary(c) for c in everything] == [
            (1, "RESOURCE_UPSERTED", "frontend"),
            (2, "RESOURCE_UPSERTED", "api"),
            (3, "EDGE_ADDED", "frontend->api"),
            (4, "RESOURCE_UPSERTED", "mysql"),
            (5, "EDGE_ADDED", "api->mysql"),
        ]
        first = everything[0]
        assert first.HasField("changed_at") and first.cluster == ""
        assert first.resource.origin == topology_pb2.RESOURCE_ORIGIN_DECLARED
        assert everything[2].edge.type == topology_pb2.EDGE_TYPE_DEPENDENCY

        resumed = await take(stub, topology_pb2.WatchTopologyRequest(after_sequence=3), 2)
        assert [c.sequence for c in resumed] == [4, 5]

        live = asyncio.ensure_future(
            take(stub, topology_pb2.WatchTopologyRequest(after_sequence=5), 2)
        )
        request = topology_pb2.DeleteDependencyRequest(to=service("api"))
        getattr(request, "from").CopyFrom(service("frontend"))
        await stub.DeleteDependency(request)
        # frontend is left without edges, so the declared resource goes too; api stays.
        assert [summary(c) for c in await live] == [
            (6, "EDGE_REMOVED", "frontend->api"),
            (7, "RESOURCE_DELETED", "frontend"),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetResource(topology_pb2.GetResourceRequest(ref=service("frontend")))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        await stub.GetResource(topology_pb2.GetResourceRequest(ref=service("api")))

        # Deleting it again: nothing to delete.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteDependency(request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_filters_by_cluster_and_kind(database_url: str) -> None:
    def in_cluster(cluster: str, kind: str, name: str) -> event_pb2.ResourceRef:
        return event_pb2.ResourceRef(cluster=cluster, kind=kind, namespace="shop", name=name)

    deps = [
        dependency(in_cluster("a", "Service", "web"), in_cluster("a", "Service", "db")),
        dependency(in_cluster("b", "Service", "web"), in_cluster("b", "Deployment", "db")),
    ]
    async with topology_server(database_url) as (_app, stub):
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=deps))
        only_b = await take(stub, topology_pb2.WatchTopologyRequest(clusters=["b"]), 3)
        assert [(c.sequence, c.cluster) for c in only_b] == [(4, "b"), (5, "b"), (6, "b")]
        deployments = await take(stub, topology_pb2.WatchTopologyRequest(kinds=["Deployment"]), 2)
        # The Deployment itself and the edge that reaches it.
        assert [summary(c) for c in deployments] == [
            (5, "RESOURCE_UPSERTED", "db"),
            (6, "EDGE_ADDED", "web->db"),
        ]


async def test_streams_end_when_the_server_shuts_down(database_url: str) -> None:
    async with topology_server(database_url) as (app, stub):
        call = stub.WatchTopology(topology_pb2.WatchTopologyRequest())
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN))
        first = await asyncio.wait_for(call.read(), 10)
        assert isinstance(first, topology_pb2.WatchTopologyResponse)
        # The stream is following; shutdown ends it cleanly once caught up.
        app.stopping.set()

        async def drain() -> None:
            while await call.read() is not grpc.aio.EOF:
                pass

        await asyncio.wait_for(drain(), 10)
        assert await call.code() == grpc.StatusCode.OK


async def test_from_now_skips_the_changes_already_made(database_url: str) -> None:
    async with topology_server(database_url) as (app, stub):
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN))
        before = app.notifier.head
        assert before > 0
        call = stub.WatchTopology(topology_pb2.WatchTopologyRequest(from_now=True))
        try:
            read = asyncio.ensure_future(call.read())
            # Keep changing the graph until the stream, whenever it started, reports.
            for number in range(50):
                extra = dependency(service(f"web-{number}"), service("api"), "HTTP")
                await stub.UpsertDependencies(
                    topology_pb2.UpsertDependenciesRequest(dependencies=[extra])
                )
                done, _ = await asyncio.wait({read}, timeout=0.2)
                if done:
                    break
            response = await asyncio.wait_for(read, 10)
            assert isinstance(response, topology_pb2.WatchTopologyResponse)
            assert response.changes
            assert min(c.sequence for c in response.changes) > before, "nothing from before"
        finally:
            call.cancel()
