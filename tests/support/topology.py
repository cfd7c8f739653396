"""Helpers for Topology tests: refs, dependencies and an in-process server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
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


def kube_ref(
    kind: str, name: str, namespace: str = "shop", cluster: str = "prod"
) -> event_pb2.ResourceRef:
    """A ref by name to an object of a synced cluster."""
    return event_pb2.ResourceRef(cluster=cluster, kind=kind, namespace=namespace, name=name)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Polls ``check`` until it returns True; fails the test after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def wait_until_kinds_settle(
    stub: TopologyServiceAsyncStub, cluster: str, failing: set[str]
) -> None:
    """Waits until every kind of ``cluster`` but the ``failing`` ones has synced (or
    been skipped). A cluster reads "degraded" as soon as one kind fails, while the
    others may still be listing."""

    async def settled() -> bool:
        ref = event_pb2.ResourceRef(cluster=cluster, kind="Cluster", name=cluster)
        found = await stub.GetResource(topology_pb2.GetResourceRequest(ref=ref))
        return all(
            state.startswith(("synced", "skipped"))
            for name, state in found.resource.attributes.items()
            if name.startswith("kind.") and name.removeprefix("kind.") not in failing
        )

    await wait_for(settled)


@asynccontextmanager
async def kube_topology(
    database_url: str, kube_clusters: str, states: set[str] | None = None, **overrides: Any
) -> AsyncIterator[tuple[TopologyApp, TopologyServiceAsyncStub]]:
    """A Topology server syncing ``kube_clusters``, once every cluster's state
    is in ``states`` (default: synced)."""
    async with topology_server(database_url, kube_clusters=kube_clusters, **overrides) as (
        app,
        stub,
    ):
        assert app.kube is not None
        await app.kube.wait_until(states or {"synced"}, timeout=30)
        yield app, stub


def kube_topology_of(
    database_url: str, directory: Path, servers: dict[str, str], states: set[str] | None = None
) -> Any:
    """kube_topology over clusters given as {name: API server URL}."""
    from tests.support.topology_kube_server import kube_clusters_setting

    return kube_topology(database_url, kube_clusters_setting(directory, servers), states)
