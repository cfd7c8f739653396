"""Blast radius: propagation direction per edge type, explanation paths and the summary."""

from __future__ import annotations

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.impact import Impact, impact, impact_response
from corrmesh.v1 import topology_pb2
from tests.support.topology_cluster import NODE, build_cluster, kref


def described(graph: TopologyGraph, found: Impact) -> dict[str, tuple[list[str], int]]:
    """ "Kind/name" -> (path as names, distance)."""
    result = {}
    for item in found.impacted:
        ref = graph.resources[item.key].ref
        path = [graph.resources[k].ref.name for k in item.path]
        result[f"{ref.kind}/{ref.name}"] = (path, item.distance)
    return result


def test_a_dependency_failing_takes_down_its_dependents() -> None:
    graph, keys = build_cluster()
    found = impact(graph, keys["Deployment/mysql"], 8)
    assert described(graph, found) == {
        "Service/api": (["mysql", "api"], 1),
        "Service/frontend": (["mysql", "api", "frontend"], 2),
    }
    assert found.summary == "Deployment mysql down -> Service api -> Service frontend"


def test_a_node_failing_reaches_pods_their_owners_services_and_dependents() -> None:
    graph, keys = build_cluster()
    found = impact(graph, keys["Node/worker-2"], 8)
    impacted = described(graph, found)
    assert impacted == {
        "Pod/web-1": (["worker-2", "web-1"], 1),
        "Pod/web-2": (["worker-2", "web-2"], 1),
        "ReplicaSet/web-abc": (["worker-2", "web-1", "web-abc"], 2),
        "Service/web": (["worker-2", "web-1", "web"], 2),
        "Deployment/web": (["worker-2", "web-1", "web-abc", "web"], 3),
        "Service/frontend": (["worker-2", "web-1", "web", "frontend"], 3),
    }
    # The ConfigMap feeds the pods; a pod failing does not break it.
    assert "ConfigMap/web-config" not in impacted
    assert found.summary == (
        "Node worker-2 down -> pods web-1, web-2 -> ReplicaSet web-abc; Service web"
        " -> Deployment web; Service frontend"
    )


def test_config_and_volume_failures_propagate_to_pods() -> None:
    graph, keys = build_cluster()
    config = described(graph, impact(graph, keys["ConfigMap/web-config"], 1))
    assert set(config) == {"Pod/web-1", "Pod/web-2"}
    volume = described(graph, impact(graph, keys["PersistentVolumeClaim/data-mysql-0"], 8))
    assert volume["Pod/mysql-0"] == (["data-mysql-0", "mysql-0"], 1)
    assert volume["Service/frontend"] == (
        ["data-mysql-0", "mysql-0", "mysql-xyz", "mysql", "api", "frontend"],
        5,
    )


def test_an_owner_failing_does_not_take_down_what_it_owns() -> None:
    graph, keys = build_cluster()
    found = impact(graph, keys["ReplicaSet/web-abc"], 8)
    assert set(described(graph, found)) == {"Deployment/web"}


def test_kinds_filter_what_is_reported_not_what_is_walked() -> None:
    graph, keys = build_cluster()
    found = impact(graph, keys["Node/worker-2"], 8, {"Service"})
    assert set(described(graph, found)) == {"Service/web", "Service/frontend"}
    assert found.summary == "Node worker-2 down -> Service web -> Service frontend"


def test_max_depth_bounds_the_walk_and_nothing_depends_on_a_leaf() -> None:
    graph, keys = build_cluster()
    assert set(described(graph, impact(graph, keys["Node/worker-2"], 1))) == {
        "Pod/web-1",
        "Pod/web-2",
    }
    leaf = impact(graph, keys["Service/frontend"], 8)
    assert leaf.impacted == []
    assert leaf.summary == "Service frontend down; nothing depends on it"


def test_summary_shortens_long_groups() -> None:
    graph, keys = build_cluster()
    for index in range(3, 7):
        pod = graph.upsert_resource(topology_pb2.Resource(ref=kref("Pod", f"web-{index}")))
        graph.add_edge(keys["Node/worker-2"], pod, NODE)
    found = impact(graph, keys["Node/worker-2"], 1)
    assert found.summary == "Node worker-2 down -> pods web-1, web-2, web-3 and 3 more"


def test_the_response_built_from_wire_bytes_equals_one_built_field_by_field() -> None:
    graph, keys = build_cluster()
    for root in ("Node/worker-2", "Deployment/mysql", "ConfigMap/web-config", "Service/frontend"):
        for kinds in (set(), {"Service", "Pod"}):
            found = impact(graph, keys[root], 8, kinds)
            expected = topology_pb2.GetImpactResponse(
                root=graph.resources[keys[root]].ref, summary=found.summary
            )
            for item in found.impacted:
                entry = expected.impacted.add(distance=item.distance)
                entry.resource.CopyFrom(graph.resources[item.key].ref)
                entry.path.extend([graph.resources[k].ref for k in item.path])
            assert impact_response(graph, keys[root], 8, kinds) == expected, (root, kinds)


def test_cached_refs_follow_a_resource_changing() -> None:
    graph, keys = build_cluster()
    before = impact_response(graph, keys["Node/worker-2"], 1)
    assert "web-1" in [i.resource.name for i in before.impacted]
    renamed = topology_pb2.Resource()
    renamed.CopyFrom(graph.resources[keys["Pod/web-1"]])
    renamed.ref.api_version = "v2"
    graph.upsert_resource(renamed)
    after = impact_response(graph, keys["Node/worker-2"], 1)
    web_1 = next(i for i in after.impacted if i.resource.name == "web-1")
    assert web_1.resource.api_version == "v2" and web_1.path[-1].api_version == "v2"
    # An edge removed: the cached one-hop spread of the node is dropped with it.
    graph.remove_edge(keys["Node/worker-2"], keys["Pod/web-1"], NODE)
    assert "web-1" not in [
        i.resource.name for i in impact_response(graph, keys["Node/worker-2"], 1).impacted
    ]
