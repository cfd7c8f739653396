"""The graph's structure and traversals: identity, edges, owner chains, neighbours, paths."""

from __future__ import annotations

import pytest

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import key_from_text, key_to_text
from corrmesh.topology.walks import BOTH, INCOMING, OUTGOING, find_path, neighbors, owner_chain
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology_cluster import (
    CONFIG,
    NODE,
    OWNER,
    SELECTOR,
    build_cluster,
    kref,
    uid_of,
)


def names_of(graph: TopologyGraph, keys: list) -> list[str]:
    return [graph.resources[k].ref.name for k in keys]


def test_resources_are_found_by_uid_or_by_name_but_not_by_another_uid() -> None:
    graph, keys = build_cluster()
    web1 = keys["Pod/web-1"]
    assert web1 == ("uid", uid_of("Pod", "web-1"))
    assert graph.resolve(kref("Pod", "web-1")) == web1
    assert graph.resolve(event_pb2.ResourceRef(uid=uid_of("Pod", "web-1"))) == web1
    # Another incarnation (same name, new uid) is not this pod.
    other = kref("Pod", "web-1")
    other.uid = "uid-of-a-recreated-pod"
    assert graph.resolve(other) is None
    # A declared service has no uid; an event naming it with a uid still finds it.
    api = kref("Service", "api")
    api.uid = "uid-seen-by-an-event"
    assert graph.resolve(api) == keys["Service/api"]
    assert graph.resolve(kref("Service", "api", namespace="other")) is None
    assert key_from_text(key_to_text(keys["Service/api"])) == keys["Service/api"]


def test_edges_need_both_ends_and_are_not_duplicated() -> None:
    graph, keys = build_cluster()
    count = graph.edge_count()
    assert not graph.add_edge(keys["Service/web"], keys["Pod/web-1"], SELECTOR)
    with pytest.raises(KeyError):
        graph.add_edge(keys["Service/web"], ("uid", "missing"), SELECTOR)
    with pytest.raises(ValueError):
        graph.add_edge(keys["Service/web"], keys["Service/web"], SELECTOR)
    assert graph.edge_count() == count
    assert graph.remove_edge(keys["Service/web"], keys["Pod/web-1"], SELECTOR)
    assert not graph.remove_edge(keys["Service/web"], keys["Pod/web-1"], SELECTOR)
    assert graph.edge_count() == count - 1


def test_deleting_a_resource_removes_and_returns_its_edges() -> None:
    graph, keys = build_cluster()
    web1 = keys["Pod/web-1"]
    version = graph.version
    removed = graph.delete_resource(web1)
    assert {(e[0], e[2]) for e in removed} == {
        (keys["Node/worker-2"], NODE),
        (keys["ReplicaSet/web-abc"], OWNER),
        (keys["Service/web"], SELECTOR),
        (keys["ConfigMap/web-config"], CONFIG),
    }
    assert graph.version > version
    assert graph.resolve(kref("Pod", "web-1")) is None
    assert not graph.has_edge(keys["Service/web"], web1, SELECTOR)
    assert list(graph.edges_of(web1)) == []
    assert graph.delete_resource(web1) == []


def test_upsert_replaces_a_resource_and_keeps_its_edges() -> None:
    graph, keys = build_cluster()
    ref = kref("Pod", "web-1")
    ref.uid = uid_of("Pod", "web-1")
    graph.upsert_resource(topology_pb2.Resource(ref=ref, attributes={"phase": "Failed"}))
    assert graph.get(kref("Pod", "web-1")).attributes["phase"] == "Failed"  # type: ignore[union-attr]
    assert graph.has_edge(keys["Service/web"], keys["Pod/web-1"], SELECTOR)


def test_owner_chain_is_nearest_first() -> None:
    graph, keys = build_cluster()
    chain = owner_chain(graph, keys["Pod/mysql-0"])
    assert names_of(graph, chain) == ["mysql-0", "mysql-xyz", "mysql"]
    assert owner_chain(graph, keys["Deployment/web"]) == [keys["Deployment/web"]]
    # A cycle (never valid in Kubernetes) ends the chain instead of looping.
    graph.add_edge(keys["Pod/mysql-0"], keys["Deployment/mysql"], OWNER)
    assert len(owner_chain(graph, keys["Pod/mysql-0"])) == 3


def test_neighbours_by_direction_type_and_depth() -> None:
    graph, keys = build_cluster()
    web1 = keys["Pod/web-1"]
    incoming = neighbors(graph, web1, (), INCOMING, 1)
    assert {names_of(graph, [h.key])[0] for h in incoming} == {
        "worker-2",
        "web-abc",
        "web",
        "web-config",
    }
    assert all(h.distance == 1 and h.edge[1] == web1 for h in incoming)
    assert neighbors(graph, web1, (), OUTGOING, 3) == []

    owners = neighbors(graph, web1, (OWNER,), INCOMING, 5)
    assert [(graph.resources[h.key].ref.kind, h.distance) for h in owners] == [
        ("ReplicaSet", 1),
        ("Deployment", 2),
    ]
    # Depth 2 both ways through the Service reaches the other pod and the declared frontend.
    around = neighbors(graph, keys["Service/web"], (), BOTH, 2)
    distances = {graph.resources[h.key].ref.name: h.distance for h in around}
    assert distances["frontend"] == 1 and distances["web-1"] == 1
    assert distances["api"] == 2 and distances["worker-2"] == 2
    frontend = next(h for h in around if h.key == keys["Service/frontend"])
    assert frontend.edge == (keys["Service/frontend"], keys["Service/web"], 7)


def test_find_path_walks_edges_either_way_within_max_depth() -> None:
    graph, keys = build_cluster()
    path = find_path(graph, keys["Service/frontend"], keys["Pod/mysql-0"], 8)
    assert path == [
        (keys["Service/frontend"], keys["Service/api"], 7),
        (keys["Service/api"], keys["Deployment/mysql"], 7),
        (keys["Deployment/mysql"], keys["ReplicaSet/mysql-xyz"], OWNER),
        (keys["ReplicaSet/mysql-xyz"], keys["Pod/mysql-0"], OWNER),
    ]
    # Against the edges' direction, the same path back.
    back = find_path(graph, keys["Pod/mysql-0"], keys["Service/frontend"], 4)
    assert back == list(reversed(path))
    assert find_path(graph, keys["Pod/mysql-0"], keys["Service/frontend"], 3) is None
    assert find_path(graph, keys["Pod/mysql-0"], keys["Service/frontend"], 8, (OWNER,)) is None
    assert find_path(graph, keys["Pod/web-1"], keys["Pod/web-1"], 1) == []
    assert find_path(graph, keys["Pod/batch-1"], keys["Pod/web-1"], 32) is None
