"""Topology against a real kube-apiserver with etcd (RBAC on, watch cache off)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from corrmesh.ingest.server import IngestApp
from corrmesh.v1 import event_pb2, ingest_pb2_grpc, topology_pb2
from tests.support.ingest import all_events
from tests.support.inprocess import running
from tests.support.topology import kube_topology, wait_for, wait_until_kinds_settle
from tests.support.topology_apiserver import ApiServer
from tests.support.topology_kube import (
    SECRET_VALUE,
    KubeAdmin,
    build_estate,
    make_pod,
    node_body,
)

#: The first run builds kube-apiserver (minutes); later runs take it from the cache.
pytestmark = pytest.mark.timeout(3600)

T = topology_pb2
REPO = Path(__file__).resolve().parents[3]
ROLE_FILE = REPO / "deploy" / "kustomize" / "base" / "topology.yaml"


def ref(kind: str, name: str, namespace: str = "shop") -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(cluster="real", kind=kind, namespace=namespace, name=name)


def topology_on(database_url: str, kubeconfig: Path, states: set[str], **overrides: Any) -> Any:
    return kube_topology(database_url, f"real={kubeconfig}", states, **overrides)


def names(response: Any) -> set[str]:
    return {i.resource.name for i in response.impacted}


async def test_estate_changes_and_events(apiserver: ApiServer, tmp_path: Path) -> None:
    admin = KubeAdmin(apiserver.kubeconfig())
    made = build_estate(admin)
    database_url = f"sqlite:///{tmp_path / 'topology.db'}"
    async with (
        running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'ingest.db'}") as (
            _ingest_app,
            ingest_address,
        ),
        grpc.aio.insecure_channel(ingest_address) as ingest_channel,
        topology_on(
            database_url, apiserver.kubeconfig(), {"synced"}, ingest_address=ingest_address
        ) as (app, stub),
    ):
        ingest = ingest_pb2_grpc.IngestServiceStub(ingest_channel)
        # The estate, as the real server serves it.
        chain = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "order-5d9c7-1")))
        assert [r.ref.name for r in chain.chain] == ["order-5d9c7-1", "order-5d9c7", "order"]
        assert chain.chain[0].ref.uid == made["Pod/order-5d9c7-1"]["metadata"]["uid"]
        impact = await stub.GetImpact(
            T.GetImpactRequest(ref=ref("Node", "worker-2", ""), kinds=["Deployment", "Service"])
        )
        assert names(impact) == {"payment", "order", "payment-svc", "order-svc"}
        secret = app.graph.get(ref("Secret", "db-credentials"))
        assert secret is not None and SECRET_VALUE not in str(secret)

        # Scale web up by one Pod on worker-2: worker-2 now takes web down too.
        make_pod(admin, "web-5d9c7-1", "worker-2", "web", made["ReplicaSet/web-5d9c7"])

        async def web_on_worker_2() -> bool:
            found = await stub.GetImpact(
                T.GetImpactRequest(ref=ref("Node", "worker-2", ""), kinds=["Deployment"])
            )
            return names(found) == {"payment", "order", "web"}

        await wait_for(web_on_worker_2)

        # Delete order's Pod on worker-2: order no longer depends on worker-2.
        admin.delete("Pod", "order-5d9c7-1", "shop")

        async def order_gone() -> bool:
            found = await stub.GetImpact(
                T.GetImpactRequest(ref=ref("Node", "worker-2", ""), kinds=["Deployment"])
            )
            return names(found) == {"payment", "web"}

        await wait_for(order_gone)

        # worker-2 goes NotReady.
        admin.patch(
            "Node", "worker-2", {"status": node_body("worker-2", "False")["status"]}, status=True
        )

        async def not_ready() -> bool:
            found = app.graph.get(ref("Node", "worker-2", ""))
            return found is not None and found.attributes["ready"] == "False"

        await wait_for(not_ready)

        # Kubernetes Events reach Ingest: the recorded BackOff, then its repeat.
        backoff = made["Event/payment-backoff"]

        async def published(count: int) -> list[event_pb2.Event]:
            found: list[event_pb2.Event] = []

            async def enough() -> bool:
                found[:] = [e for e in await all_events(ingest) if e.type == "BackOff"]
                return len(found) >= count

            await wait_for(enough)
            return found

        first = (await published(1))[0]
        assert first.domain == event_pb2.DOMAIN_KUBERNETES
        assert first.source == "kubernetes/real"
        assert (first.resource.kind, first.resource.name) == ("Pod", "payment-5d9c7-0")
        assert first.resource.uid == made["Pod/payment-5d9c7-0"]["metadata"]["uid"]
        details = first.kubernetes
        assert (details.count, details.event_type, details.reason) == (3, "Warning", "BackOff")
        assert details.first_timestamp.ToJsonString() == "2026-11-01T11:58:00Z"
        assert details.last_timestamp.ToJsonString() == "2026-11-01T12:00:00Z"
        repeat = {"count": 4, "lastTimestamp": "2026-11-01T12:05:00Z"}
        admin.patch("Event", backoff["metadata"]["name"], repeat, "shop")
        events = await published(2)
        assert [e.kubernetes.count for e in events] == [3, 4]
        assert len({e.event_id for e in events}) == 2
        admin.close()


async def test_watch_expired_by_compaction_relists(apiserver: ApiServer, tmp_path: Path) -> None:
    admin = KubeAdmin(apiserver.kubeconfig())
    admin.create("Namespace", {"metadata": {"name": "shop"}})
    admin.create("ConfigMap", {"metadata": {"name": "before", "namespace": "shop"}})
    database_url = f"sqlite:///{tmp_path / 'topology.db'}"
    async with topology_on(database_url, apiserver.kubeconfig(), {"synced"}) as (app, _stub):
        assert app.kube is not None
        status = app.kube.status["real"]
        lists_before = status.relists
        head = app.notifier.head
        # Other kinds move etcd's revision on; ConfigMap watches stay at their old one.
        for index in range(20):
            admin.create("Secret", {"metadata": {"name": f"s-{index}", "namespace": "shop"}})
        apiserver.compact()

        async def relisted() -> bool:
            return status.relists > lists_before

        await wait_for(relisted, 60)

        async def resynced() -> bool:
            changes = app.store.read_changes_after(head, 1000)
            return any(
                c.type == T.CHANGE_TYPE_RESYNCED and c.resource.ref.kind == "ConfigMap"
                for c in changes
            )

        await wait_for(resynced, 30)
        # The watch runs again after the relist: a new ConfigMap arrives.
        admin.create("ConfigMap", {"metadata": {"name": "after", "namespace": "shop"}})

        async def arrived() -> bool:
            return app.graph.get(ref("ConfigMap", "after")) is not None

        await wait_for(arrived)
        assert app.graph.get(ref("ConfigMap", "before")) is not None
    admin.close()


def _role_from_deploy() -> dict[str, Any]:
    for document in yaml.safe_load_all(ROLE_FILE.read_text(encoding="utf-8")):
        if document and document["kind"] == "ClusterRole":
            return dict(document)
    raise AssertionError("no ClusterRole in topology.yaml")


def _bind(admin: KubeAdmin, role: dict[str, Any], user: str) -> None:
    role = copy.deepcopy(role)
    role["metadata"] = {"name": f"topology-{user}"}
    admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"topology-{user}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"topology-{user}",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)


async def test_the_deployed_role_is_enough_and_less_degrades(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    admin = KubeAdmin(apiserver.kubeconfig())
    build_estate(admin)
    role = _role_from_deploy()
    _bind(admin, role, "topology")
    narrow = copy.deepcopy(role)
    for rule in narrow["rules"]:
        rule["resources"] = [r for r in rule["resources"] if r != "secrets"]
    narrow["rules"] = [r for r in narrow["rules"] if r["resources"]]
    _bind(admin, narrow, "narrow")
    admin.close()

    async with topology_on(
        f"sqlite:///{tmp_path / 'full.db'}", apiserver.kubeconfig("topology"), {"synced"}
    ) as (app, stub):
        cluster = await stub.GetResource(T.GetResourceRequest(ref=ref("Cluster", "real", "")))
        assert cluster.resource.attributes["state"] == "synced"
        assert app.graph.get(ref("Secret", "db-credentials")) is not None

    async with topology_on(
        f"sqlite:///{tmp_path / 'narrow.db'}", apiserver.kubeconfig("narrow"), {"degraded"}
    ) as (app, stub):
        await wait_until_kinds_settle(stub, "real", {"Secret"})
        cluster = await stub.GetResource(T.GetResourceRequest(ref=ref("Cluster", "real", "")))
        attributes = cluster.resource.attributes
        assert attributes["kind.Secret"].startswith("forbidden: ")
        assert attributes["kind.Pod"] == "synced: v1"
        chain = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "mysql-0")))
        assert chain.chain[-1].ref.kind == "StatefulSet"
