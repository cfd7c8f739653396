"""Helpers for Topology tests: refs, dependencies and an in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc
from tests.support.inprocess import running

if TYPE_CHECKING:
    from corrmesh.v1.topology_pb2_grpc import TopologyServiceAsyncStub


def ref(kind: str, name: str, namespace: str = "shop", **fields: str) -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(kind=kind, name=name, namespace=namespace, **fields)


def service(name: str) -> event_pb2.ResourceRef:
    return ref("Service", name)


def dependency(
    dependent: event_pb2.ResourceRef, target: event_pb2.ResourceRef, description: str = ""
) -> topology_pb2.Dependency:
    dep = topology_pb2.Dependency(to=target, description=description)
    getattr(dep, "from").CopyFrom(dependent)
    return dep


def names(refs: Any) -> list[str]:
    """The names of a sequence of ResourceRefs (or of Resources' refs)."""
    return [r.ref.name if hasattr(r, "ref") else r.name for r in refs]


@asynccontextmanager
async def topology_server(
    database_url: str, **overrides: Any
) -> AsyncIterator[tuple[TopologyApp, TopologyServiceAsyncStub]]:
    """A Topology server on ``database_url`` and a stub talking to it over loopback."""
    async with running(TopologyApp, "topology", database_url=database_url, **overrides) as (
        app,
        address,
    ):
        assert isinstance(app, TopologyApp)
        channel = open_channel(address, traced=False)
        try:
            yield app, topology_pb2_grpc.TopologyServiceStub(channel)
        finally:
            await channel.close()
