"""Kubernetes objects (recorded from a real kube-apiserver) applied to the graph."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.kube.kinds import KINDS, ServedKind
from corrmesh.topology.kube.linker import KubeLinker
from corrmesh.topology.kube.mapping import MalformedObjectError, references
from corrmesh.topology.messages import now_timestamp
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology_kube_server import load_recorded

T = topology_pb2
SPECS = {spec.kind: spec for spec in KINDS}
#: Collection path -> the kind and version it was recorded at.
SERVED = {
    "/api/v1/nodes": ServedKind(SPECS["Node"], "v1"),
    "/api/v1/pods": ServedKind(SPECS["Pod"], "v1"),
    "/api/v1/services": ServedKind(SPECS["Service"], "v1"),
    "/api/v1/configmaps": ServedKind(SPECS["ConfigMap"], "v1"),
    "/api/v1/secrets": ServedKind(SPECS["Secret"], "v1"),
    "/api/v1/persistentvolumeclaims": ServedKind(SPECS["PersistentVolumeClaim"], "v1"),
    "/apis/apps/v1/replicasets": ServedKind(SPECS["ReplicaSet"], "v1"),
    "/apis/apps/v1/deployments": ServedKind(SPECS["Deployment"], "v1"),
    "/apis/apps/v1/statefulsets": ServedKind(SPECS["StatefulSet"], "v1"),
    "/apis/apps/v1/daemonsets": ServedKind(SPECS["DaemonSet"], "v1"),
    "/apis/batch/v1/jobs": ServedKind(SPECS["Job"], "v1"),
    "/apis/batch/v1beta1/cronjobs": ServedKind(SPECS["CronJob"], "v1beta1"),
    "/apis/discovery.k8s.io/v1beta1/endpointslices": ServedKind(SPECS["EndpointSlice"], "v1beta1"),
}


@pytest.fixture(scope="module")
def recorded() -> list[tuple[ServedKind, dict[str, Any]]]:
    collections = load_recorded()["collections"]
    return [
        (SERVED[path], obj)
        for path, items in collections.items()
        if path in SERVED
        for obj in items
    ]


def apply_all(objects: list[tuple[ServedKind, dict[str, Any]]]) -> tuple[TopologyGraph, KubeLinker]:
    graph = TopologyGraph()
    linker = KubeLinker(graph)
    now = now_timestamp()
    for served, obj in objects:
        linker.upsert("prod", served, obj, now)
    return graph, linker


def edge_names(graph: TopologyGraph) -> set[tuple[str, str, int]]:
    found = set()
    for key in graph.resources:
        for source, target, edge_type in graph.edges_of(key):
            found.add(
                (graph.resources[source].ref.name, graph.resources[target].ref.name, edge_type)
            )
    return found


def key(graph: TopologyGraph, kind: str, name: str, namespace: str = "shop") -> Any:
    found = graph.resolve(
        event_pb2.ResourceRef(cluster="prod", kind=kind, namespace=namespace, name=name)
    )
    assert found is not None, f"{kind} {name} not in the graph"
    return found


def find(recorded: list[tuple[ServedKind, dict[str, Any]]], kind: str, name: str) -> dict[str, Any]:
    for served, obj in recorded:
        if served.kind == kind and obj["metadata"]["name"] == name:
            return copy.deepcopy(obj)
    raise KeyError(name)


def test_pod_references_name_owner_node_config_and_secret(recorded: Any) -> None:
    pod = find(recorded, "Pod", "payment-5d9c7-0")
    found = {
        (edge, is_from, target[-1]) for edge, is_from, target in references("prod", "Pod", pod)
    }
    owner_uid = pod["metadata"]["ownerReferences"][0]["uid"]
    assert found == {
        (T.EDGE_TYPE_OWNER, False, owner_uid),
        (T.EDGE_TYPE_NODE, False, "worker-1"),
        (T.EDGE_TYPE_CONFIG, False, "payment-config"),
        (T.EDGE_TYPE_CONFIG, False, "db-credentials"),
    }
    mysql = find(recorded, "Pod", "mysql-0")
    assert (
        T.EDGE_TYPE_VOLUME,
        False,
        ("prod", "PersistentVolumeClaim", "shop", "data-mysql-0"),
    ) in (references("prod", "Pod", mysql))


def test_edges_do_not_depend_on_the_order_objects_arrive_in(recorded: Any) -> None:
    expected = edge_names(apply_all(recorded)[0])
    assert ("payment-svc", "payment-5d9c7-0", T.EDGE_TYPE_SELECTOR) in expected
    assert ("order-svc-abcde", "order-5d9c7-1", T.EDGE_TYPE_ENDPOINT) in expected
    assert ("report", "report-1", T.EDGE_TYPE_OWNER) in expected
    rng = random.Random(4)
    for _ in range(5):
        shuffled = list(recorded)
        rng.shuffle(shuffled)
        assert edge_names(apply_all(shuffled)[0]) == expected


def test_updates_move_only_the_edges_that_changed(recorded: Any) -> None:
    graph, linker = apply_all(recorded)
    pods = SERVED["/api/v1/pods"]
    services = SERVED["/api/v1/services"]
    pod = find(recorded, "Pod", "payment-5d9c7-0")
    pod["metadata"]["resourceVersion"] = "99991"
    pod["metadata"]["labels"] = {"app": "other"}
    pod["spec"]["nodeName"] = "worker-3"
    changes: list[T.TopologyChange] = []
    linker.upsert("prod", pods, pod, now_timestamp(), changes)
    pod_key = key(graph, "Pod", "payment-5d9c7-0")
    assert not graph.has_edge(key(graph, "Service", "payment-svc"), pod_key, T.EDGE_TYPE_SELECTOR)
    assert graph.has_edge(key(graph, "Node", "worker-3", ""), pod_key, T.EDGE_TYPE_NODE)
    assert not graph.has_edge(key(graph, "Node", "worker-1", ""), pod_key, T.EDGE_TYPE_NODE)
    # The ConfigMap, Secret and owner edges did not move, so they are not changes.
    summary = sorted((c.type, c.edge.type) for c in changes if c.HasField("edge"))
    assert summary == sorted(
        [
            (T.CHANGE_TYPE_EDGE_ADDED, T.EDGE_TYPE_NODE),
            (T.CHANGE_TYPE_EDGE_REMOVED, T.EDGE_TYPE_NODE),
            (T.CHANGE_TYPE_EDGE_REMOVED, T.EDGE_TYPE_SELECTOR),
        ]
    )
    # A Service whose selector changes picks up the Pod again.
    service = find(recorded, "Service", "payment-svc")
    service["metadata"]["resourceVersion"] = "99992"
    service["spec"]["selector"] = {"app": "other"}
    linker.upsert("prod", services, service, now_timestamp())
    selected = graph.outgoing(key(graph, "Service", "payment-svc"), T.EDGE_TYPE_SELECTOR)
    assert [graph.resources[k].ref.name for k in selected] == ["payment-5d9c7-0"]


def test_an_object_unchanged_since_last_seen_costs_no_change(recorded: Any) -> None:
    graph, linker = apply_all(recorded)
    version = graph.version
    changes: list[T.TopologyChange] = []
    for served, obj in recorded:
        linker.upsert("prod", served, obj, now_timestamp(), changes)
    assert changes == [] and graph.version == version


def test_a_recreated_config_map_is_linked_again(recorded: Any) -> None:
    graph, linker = apply_all(recorded)
    configmaps = SERVED["/api/v1/configmaps"]
    config = find(recorded, "ConfigMap", "payment-config")
    linker.delete("prod", configmaps, config, now_timestamp())
    assert (
        graph.get(
            event_pb2.ResourceRef(
                cluster="prod", kind="ConfigMap", namespace="shop", name="payment-config"
            )
        )
        is None
    )
    config["metadata"]["uid"] = "a-new-incarnation"
    linker.upsert("prod", configmaps, config, now_timestamp())
    users = graph.outgoing(key(graph, "ConfigMap", "payment-config"), T.EDGE_TYPE_CONFIG)
    assert {graph.resources[k].ref.name for k in users} == {"payment-5d9c7-0", "payment-5d9c7-1"}


def test_replace_drops_what_the_list_no_longer_has(recorded: Any) -> None:
    graph, linker = apply_all(recorded)
    pods = SERVED["/api/v1/pods"]
    kept = [
        obj
        for served, obj in recorded
        if served.kind == "Pod" and obj["metadata"]["name"] != "mysql-0"
    ]
    skipped = linker.replace("prod", pods, [*kept, {"metadata": {}}], now_timestamp())
    assert skipped == 1
    names = {r.ref.name for r in graph.resources.values() if r.ref.kind == "Pod"}
    assert "mysql-0" not in names and len(names) == len(kept)
    assert not graph.outgoing(key(graph, "StatefulSet", "mysql"), T.EDGE_TYPE_OWNER)


def test_an_object_without_a_name_is_rejected(recorded: Any) -> None:
    _graph, linker = apply_all([])
    with pytest.raises(MalformedObjectError):
        linker.upsert("prod", SERVED["/api/v1/pods"], {"metadata": {"uid": "x"}}, now_timestamp())


def test_core_endpoints_link_service_and_pods(recorded: Any) -> None:
    graph, linker = apply_all([(s, o) for s, o in recorded if s.kind in ("Pod", "Service")])
    pod = find(recorded, "Pod", "web-5d9c7-0")
    endpoints = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "ep-web", "resourceVersion": "1"},
        "subsets": [
            {
                "notReadyAddresses": [
                    {
                        "ip": "10.0.0.9",
                        "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-5d9c7-0"},
                    }
                ]
            }
        ],
    }
    linker.upsert("prod", ServedKind(SPECS["Endpoints"], "v1"), endpoints, now_timestamp())
    ep = key(graph, "Endpoints", "web")
    assert graph.has_edge(key(graph, "Service", "web"), ep, T.EDGE_TYPE_ENDPOINT)
    assert graph.has_edge(ep, key(graph, "Pod", pod["metadata"]["name"]), T.EDGE_TYPE_ENDPOINT)
