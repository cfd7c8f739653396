"""Bad input for every TopologyService RPC: INVALID_ARGUMENT naming the field, or NOT_FOUND."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import grpc
import pytest

from corrmesh.runtime.errors import bad_request_fields
from corrmesh.runtime.paging import encode_page_token
from corrmesh.topology.validation import MAX_PAIRS
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology import dependency, ref, service, topology_server

if TYPE_CHECKING:
    from corrmesh.v1.topology_pb2_grpc import TopologyServiceAsyncStub

T = topology_pb2
NO_NAME = event_pb2.ResourceRef(kind="Service")
ABSENT = service("absent")


async def invalid(call: Awaitable[object]) -> list[str]:
    """The fields an INVALID_ARGUMENT names."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return bad_request_fields(caught.value)


async def not_found(call: Awaitable[object]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    return caught.value.details() or ""


def with_from(message: T.FindPathRequest | T.DeleteDependencyRequest, value: event_pb2.ResourceRef):
    getattr(message, "from").CopyFrom(value)
    return message


async def seed(stub: TopologyServiceAsyncStub) -> None:
    deps = [dependency(service("frontend"), service("api"))]
    await stub.UpsertDependencies(T.UpsertDependenciesRequest(dependencies=deps))


async def test_resource_queries(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await seed(stub)
        assert await invalid(stub.GetResource(T.GetResourceRequest())) == ["ref"]
        assert await invalid(stub.GetResource(T.GetResourceRequest(ref=NO_NAME))) == ["ref.name"]
        long_name = service("x" * 300)
        assert await invalid(stub.GetResource(T.GetResourceRequest(ref=long_name))) == ["ref.name"]
        assert "absent" in await not_found(stub.GetResource(T.GetResourceRequest(ref=ABSENT)))

        assert await invalid(stub.GetOwnerChain(T.GetOwnerChainRequest())) == ["ref"]
        await not_found(stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ABSENT)))

        bad_neighbours = T.ListNeighborsRequest(
            ref=event_pb2.ResourceRef(name="api"),
            edge_types=[T.EDGE_TYPE_OWNER, 0, 42],  # type: ignore[list-item]
            depth=-1,
            direction=9,  # type: ignore[arg-type]
        )
        assert await invalid(stub.ListNeighbors(bad_neighbours)) == [
            "ref.kind",
            "edge_types[1]",
            "edge_types[2]",
            "depth",
            "direction",
        ]
        deep = T.ListNeighborsRequest(ref=service("api"), depth=1000)
        assert await invalid(stub.ListNeighbors(deep)) == ["depth"]
        await not_found(stub.ListNeighbors(T.ListNeighborsRequest(ref=ABSENT)))

        path = with_from(T.FindPathRequest(to=NO_NAME, max_depth=-2), event_pb2.ResourceRef())
        assert await invalid(stub.FindPath(path)) == [
            "from.kind",
            "from.name",
            "to.name",
            "max_depth",
        ]
        assert await invalid(stub.FindPath(T.FindPathRequest(to=service("api")))) == ["from"]
        missing_end = with_from(T.FindPathRequest(to=ABSENT), service("api"))
        assert "absent" in await not_found(stub.FindPath(missing_end))

        impact = T.GetImpactRequest(ref=service("api"), max_depth=33, kinds=["Pod", ""])
        assert await invalid(stub.GetImpact(impact)) == ["max_depth", "kinds[1]"]
        await not_found(stub.GetImpact(T.GetImpactRequest(ref=ABSENT)))

        # The server keeps serving.
        await stub.GetResource(T.GetResourceRequest(ref=service("api")))


async def test_list_resources(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await seed(stub)
        assert await invalid(stub.ListResources(T.ListResourcesRequest(page_size=-1))) == [
            "page_size"
        ]
        set_based = T.ListResourcesRequest(label_selector="app in (api,db)")
        assert await invalid(stub.ListResources(set_based)) == ["label_selector"]
        garbage = T.ListResourcesRequest(page_token="not-a-token")
        assert await invalid(stub.ListResources(garbage)) == ["page_token"]
        first = await stub.ListResources(T.ListResourcesRequest(kind="Service", page_size=1))
        other_filter = T.ListResourcesRequest(kind="Pod", page_token=first.next_page_token)
        assert await invalid(stub.ListResources(other_filter)) == ["page_token"]
        forged = T.ListResourcesRequest(page_token=encode_page_token(7, "x"))
        assert await invalid(stub.ListResources(forged)) == ["page_token"]


async def test_relate_resources(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await seed(stub)
        good = T.ResourcePair(a=service("api"), b=service("frontend"))
        too_many = T.RelateResourcesRequest(pairs=[good] * (MAX_PAIRS + 1))
        assert await invalid(stub.RelateResources(too_many)) == ["pairs"]
        bad = T.RelateResourcesRequest(
            pairs=[
                good,
                T.ResourcePair(b=service("api")),
                T.ResourcePair(a=service("x"), b=NO_NAME),
            ]
        )
        assert await invalid(stub.RelateResources(bad)) == ["pairs[1].a", "pairs[2].b.name"]
        for distance in (-1, 17):
            far = T.RelateResourcesRequest(pairs=[good], max_distance=distance)
            assert await invalid(stub.RelateResources(far)) == ["max_distance"]
        # Exactly the limit is fine.
        at_limit = await stub.RelateResources(T.RelateResourcesRequest(pairs=[good] * MAX_PAIRS))
        assert len(at_limit.relations) == MAX_PAIRS


async def test_dependency_writes(database_url: str) -> None:
    async with topology_server(database_url) as (app, stub):
        await seed(stub)
        assert await invalid(stub.UpsertDependencies(T.UpsertDependenciesRequest())) == [
            "dependencies"
        ]
        no_ends = T.Dependency(description="x" * 2000)
        selfish = dependency(service("api"), service("api"))
        unnamed = dependency(event_pb2.ResourceRef(namespace="shop"), service("db"))
        request = T.UpsertDependenciesRequest(dependencies=[no_ends, selfish, unnamed])
        assert await invalid(stub.UpsertDependencies(request)) == [
            "dependencies[0].from",
            "dependencies[0].to",
            "dependencies[0].description",
            "dependencies[1].to",
            "dependencies[2].from.kind",
            "dependencies[2].from.name",
        ]
        # Different refs for one resource (a uid an event saw, the declared name) are
        # still a self-dependency once resolved in the graph.
        api_by_uid = ref("Service", "api", uid="uid-from-an-event")
        resolved_self = dependency(service("api"), api_by_uid)
        request = T.UpsertDependenciesRequest(dependencies=[resolved_self])
        assert await invalid(stub.UpsertDependencies(request)) == ["dependencies[0].to"]
        assert app.graph.edge_count() == 1 and app.notifier.head == 3  # nothing written

        assert await invalid(stub.DeleteDependency(T.DeleteDependencyRequest())) == ["from", "to"]
        reversed_dep = with_from(T.DeleteDependencyRequest(to=service("frontend")), service("api"))
        assert "api" in await not_found(stub.DeleteDependency(reversed_dep))
        unknown = with_from(T.DeleteDependencyRequest(to=ABSENT), service("api"))
        await not_found(stub.DeleteDependency(unknown))
        assert app.graph.edge_count() == 1


async def test_watch_topology(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        call = stub.WatchTopology(T.WatchTopologyRequest(after_sequence=-1))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["after_sequence"]
        await seed(stub)
