"""Topology kept live from a loopback server speaking the Kubernetes list/watch
protocol, fed with the estate recorded from a real kube-apiserver."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology import kube_ref as ref
from tests.support.topology import kube_topology_of, topology_server, wait_for
from tests.support.topology_kube import SECRET_VALUE
from tests.support.topology_kube_server import (
    LoopbackApiServer,
    kube_clusters_setting,
    loopback_apiserver,
    quick_watches,  # noqa: F401 (a fixture)
)

T = topology_pb2
PODS = "/api/v1/pods"
NODES = "/api/v1/nodes"
CONFIGMAPS = "/api/v1/configmaps"


pytestmark = pytest.mark.usefixtures("quick_watches")


def node(name: str) -> event_pb2.ResourceRef:
    return ref("Node", name, "")


@pytest.fixture
def loopback() -> Iterator[LoopbackApiServer]:
    with loopback_apiserver() as server:
        yield server


def neighbor_names(response: T.ListNeighborsResponse) -> set[str]:
    return {n.resource.ref.name for n in response.neighbors}


async def test_estate_graph(database_url: str, tmp_path: Path, loopback: LoopbackApiServer) -> None:
    async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}) as (app, stub):
        chain = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "payment-5d9c7-0")))
        assert [r.ref.kind for r in chain.chain] == ["Pod", "ReplicaSet", "Deployment"]
        assert chain.chain[2].ref.name == "payment"
        cron = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "report-1-x7k2p")))
        assert [r.ref.kind for r in cron.chain] == ["Pod", "Job", "CronJob"]
        # A 1.20 server serves CronJob only as batch/v1beta1: discovery found it there.
        assert cron.chain[2].ref.api_version == "batch/v1beta1"

        async def neighbors(
            kind: str, name: str, edge: T.EdgeType.ValueType, namespace: str = "shop"
        ) -> set[str]:
            request = T.ListNeighborsRequest(ref=ref(kind, name, namespace), edge_types=[edge])
            return neighbor_names(await stub.ListNeighbors(request))

        payment_pods = {"payment-5d9c7-0", "payment-5d9c7-1"}
        assert await neighbors("Service", "payment-svc", T.EDGE_TYPE_SELECTOR) == payment_pods
        assert await neighbors("Service", "payment-svc", T.EDGE_TYPE_ENDPOINT) == {
            "payment-svc-abcde"
        }
        assert await neighbors(
            "EndpointSlice", "payment-svc-abcde", T.EDGE_TYPE_ENDPOINT
        ) == payment_pods | {"payment-svc"}
        assert await neighbors("ConfigMap", "payment-config", T.EDGE_TYPE_CONFIG) == payment_pods
        assert await neighbors("ConfigMap", "shared-config", T.EDGE_TYPE_CONFIG) == {
            "order-5d9c7-0",
            "order-5d9c7-1",
        }
        assert await neighbors("Secret", "db-credentials", T.EDGE_TYPE_CONFIG) == payment_pods | {
            "order-5d9c7-0",
            "order-5d9c7-1",
        }
        assert await neighbors("PersistentVolumeClaim", "data-mysql-0", T.EDGE_TYPE_VOLUME) == {
            "mysql-0"
        }
        assert await neighbors("Node", "worker-2", T.EDGE_TYPE_NODE, "") == {
            "payment-5d9c7-1",
            "order-5d9c7-1",
            "node-exporter-worker-2",
        }

        cluster = await stub.GetResource(T.GetResourceRequest(ref=ref("Cluster", "prod", "")))
        attributes = cluster.resource.attributes
        assert attributes["state"] == "synced"
        assert attributes["kind.Endpoints"] == "skipped: replaced by EndpointSlice"
        assert attributes["kind.EndpointSlice"] == "synced: discovery.k8s.io/v1beta1"

        # Secrets are synced as metadata only: never asked for with their data.
        secret = app.graph.get(ref("Secret", "db-credentials"))
        assert secret is not None
        accepts = {a for path, a in loopback.requests if path.startswith("/api/v1/secrets")}
        assert accepts and all("as=PartialObjectMetadata" in a for a in accepts)
        everything = b"".join(r.SerializeToString() for r in app.graph.resources.values())
        assert SECRET_VALUE.encode() not in everything


async def test_impact_of_a_node_explains_each_path(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}) as (_app, stub):
        frontend = event_pb2.ResourceRef(kind="Service", namespace="shop", name="frontend")
        dependency = T.Dependency(to=ref("Service", "payment-svc"), description="HTTP")
        getattr(dependency, "from").CopyFrom(frontend)
        await stub.UpsertDependencies(T.UpsertDependenciesRequest(dependencies=[dependency]))

        response = await stub.GetImpact(
            T.GetImpactRequest(ref=node("worker-2"), kinds=["Deployment", "Service", "DaemonSet"])
        )
        found = {(i.resource.kind, i.resource.name): i for i in response.impacted}
        assert set(found) == {
            ("Deployment", "payment"),
            ("Deployment", "order"),
            ("DaemonSet", "node-exporter"),
            ("Service", "payment-svc"),
            ("Service", "order-svc"),
            ("Service", "frontend"),
        }
        path = [(r.kind, r.name) for r in found[("Service", "frontend")].path]
        assert path[0] == ("Node", "worker-2")
        assert path[1][0] == "Pod" and path[1][1].startswith("payment-")
        assert path[-2:] == [("Service", "payment-svc"), ("Service", "frontend")]
        # The declared payment-svc (by name) stands on the observed one.
        assert response.summary == (
            "Node worker-2 down -> DaemonSet node-exporter; services order-svc, payment-svc"
            " -> deployments order, payment; Service payment-svc -> Service frontend"
        )


def _pod(loopback: LoopbackApiServer, name: str) -> dict[str, Any]:
    return loopback.get(PODS, "shop", name)


async def test_graph_follows_changes(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}) as (app, stub):
        head = app.notifier.head
        # Scale payment up: a third Pod on worker-3.
        pod = copy.deepcopy(_pod(loopback, "payment-5d9c7-0"))
        pod["metadata"]["name"] = "payment-5d9c7-2"
        pod["metadata"]["uid"] = "0f0e0d0c-0000-4000-8000-000000000002"
        pod["spec"]["nodeName"] = "worker-3"
        loopback.apply(PODS, pod)

        async def has_third() -> bool:
            request = T.ListNeighborsRequest(
                ref=ref("Service", "payment-svc"), edge_types=[T.EDGE_TYPE_SELECTOR]
            )
            return "payment-5d9c7-2" in neighbor_names(await stub.ListNeighbors(request))

        await wait_for(has_third)
        chain = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "payment-5d9c7-2")))
        assert [r.ref.name for r in chain.chain] == ["payment-5d9c7-2", "payment-5d9c7", "payment"]

        # Scale down: the Pod on worker-2 goes, with its edges.
        loopback.remove(PODS, "shop", "payment-5d9c7-1")

        async def gone() -> bool:
            return app.graph.get(ref("Pod", "payment-5d9c7-1")) is None

        await wait_for(gone)
        impact = await stub.GetImpact(
            T.GetImpactRequest(ref=node("worker-2"), kinds=["Deployment"])
        )
        assert {i.resource.name for i in impact.impacted} == {"order"}

        # worker-3 goes NotReady.
        worker = copy.deepcopy(loopback.get(NODES, "", "worker-3"))
        worker["status"]["conditions"][0]["status"] = "Unknown"
        loopback.apply(NODES, worker)

        async def not_ready() -> bool:
            found = app.graph.get(node("worker-3"))
            return found is not None and found.attributes["ready"] == "Unknown"

        await wait_for(not_ready)

        # Each change reached the change log for WatchTopology.
        wanted = {
            (T.CHANGE_TYPE_RESOURCE_UPSERTED, "payment-5d9c7-2"),
            (T.CHANGE_TYPE_RESOURCE_DELETED, "payment-5d9c7-1"),
            (T.CHANGE_TYPE_EDGE_ADDED, "payment-5d9c7-2"),
            (T.CHANGE_TYPE_RESOURCE_UPSERTED, "worker-3"),
        }

        async def logged() -> bool:
            changes = app.store.read_changes_after(head, 1000)
            return wanted <= {(c.type, c.resource.ref.name or c.edge.to.name) for c in changes}

        await wait_for(logged)


def _configmap(name: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "load", "uid": uid}, "data": {"k": "v"}}


async def test_relist_after_410_is_applied_whole(database_url: str, tmp_path: Path) -> None:
    """After compaction the watch gets 410 and relists; readers see the old set
    of ConfigMaps or the new one, never a mixture."""
    old = [_configmap(f"old-{i}", f"old-uid-{i}") for i in range(1500)]
    new = [_configmap(f"new-{i}", f"new-uid-{i}") for i in range(1500)]
    with loopback_apiserver({CONFIGMAPS: old}) as loopback:
        loopback.bookmark_interval = 3600  # no bookmark may move the version past compaction
        async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}) as (app, _stub):
            assert app.kube is not None
            seen: list[tuple[int, int]] = []
            stop = asyncio.Event()

            def sample() -> None:
                listed = [
                    r.ref.name for r in app.graph.resources.values() if r.ref.kind == "ConfigMap"
                ]
                old_count = sum(n.startswith("old-") for n in listed)
                seen.append((old_count, sum(n.startswith("new-") for n in listed)))

            async def poll() -> None:
                # Every millisecond, as a busy reader would: a relist applied in
                # parts over several loop turns shows a mixture to it. Spinning
                # with sleep(0) instead would starve the reflectors' threads
                # of the GIL for seconds on a loaded machine.
                while not stop.is_set():
                    sample()
                    await asyncio.sleep(0.001)

            poller = asyncio.create_task(poll())
            head = app.notifier.head
            loopback.rewrite(CONFIGMAPS, new)

            async def relisted() -> bool:
                return app.graph.get(ref("ConfigMap", "new-0", "load")) is not None

            # A relist follows the 410 after the reflector's back-off: allow for a busy machine.
            await wait_for(relisted, 60)
            stop.set()
            await poller
            sample()
            assert set(seen) <= {(1500, 0), (0, 1500)}
            assert (0, 1500) in seen

            async def resync_logged() -> bool:
                changes = app.store.read_changes_after(head, 1000)
                return any(
                    c.type == T.CHANGE_TYPE_RESYNCED and c.resource.ref.kind == "ConfigMap"
                    for c in changes
                )

            # The graph follows the cluster first, the change log right after.
            await wait_for(resync_logged, 60)


async def test_bookmarks_keep_a_quiet_watch_resumable(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    """A kind nothing happens to still moves its version on with bookmarks, so
    after a compaction its watch resumes without a 410 and a relist."""
    loopback.bookmark_interval = 0.1
    async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}) as (app, _stub):
        assert app.kube is not None
        (cluster,) = app.kube.clusters
        (configmaps,) = [r for r in cluster.reflectors if r.served.kind == "ConfigMap"]
        pod = _pod(loopback, "web-5d9c7-0")
        for restarts in range(3):
            pod["status"]["containerStatuses"] = [{"name": "web", "restartCount": restarts}]
            loopback.apply(PODS, pod)
        version = loopback.version

        async def bookmarked() -> bool:
            return int(configmaps.resource_version) >= version

        await wait_for(bookmarked)
        loopback.compact()
        loopback.break_watches()
        await asyncio.sleep(1.0)
        assert configmaps.expirations == 0


async def test_declared_dependencies_follow_the_object_they_name(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    """A dependency file loaded before the first sync names a Service; the
    Service's failure reaches the dependent, also after it is created anew."""
    dependencies = tmp_path / "dependencies.yaml"
    dependencies.write_text(
        "dependencies:\n"
        "  - from: {kind: Service, namespace: shop, name: api}\n"
        "    to: {cluster: prod, kind: Service, namespace: shop, name: payment-svc}\n",
        encoding="utf-8",
    )
    setting = kube_clusters_setting(tmp_path, {"prod": loopback.url})
    async with topology_server(
        database_url, kube_clusters=setting, dependencies_file=str(dependencies)
    ) as (app, stub):
        assert app.kube is not None
        await app.kube.wait_until({"synced"}, 20)
        api = event_pb2.ResourceRef(kind="Service", namespace="shop", name="api")

        async def impacted() -> set[str]:
            response = await stub.GetImpact(
                T.GetImpactRequest(ref=ref("Pod", "payment-5d9c7-0"), kinds=["Service"])
            )
            return {i.resource.name for i in response.impacted}

        assert "api" in await impacted()
        service = loopback.get("/api/v1/services", "shop", "payment-svc")
        loopback.remove("/api/v1/services", "shop", "payment-svc")
        service["metadata"]["uid"] = "5e7a1d4c-0000-4000-8000-00000000beef"
        loopback.apply("/api/v1/services", service)

        async def recreated() -> bool:
            found = app.graph.get(ref("Service", "payment-svc"))
            return (
                found is not None and found.ref.uid.endswith("beef") and "api" in await impacted()
            )

        await wait_for(recreated)
        # The dependency is deleted by the names it was declared with.
        dependency = T.DeleteDependencyRequest(to=ref("Service", "payment-svc"))
        getattr(dependency, "from").CopyFrom(api)
        await stub.DeleteDependency(dependency)
        assert "api" not in await impacted()
