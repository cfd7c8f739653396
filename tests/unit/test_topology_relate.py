"""relate(): each RelationKind, the distance bound, and the cache following changes."""

from __future__ import annotations

from corrmesh.topology.relate import Relator, relations_response, shortest_distance
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology_cluster import DEPENDENCY, SELECTOR, build_cluster, kref, uid_of

R = topology_pb2.RelationKind


def relate(relator: Relator, a: str, b: str, max_distance: int = 4) -> tuple[str, int]:
    kind, distance = relator.relate(ref(a), ref(b), max_distance)
    return R.Name(kind).removeprefix("RELATION_KIND_"), distance  # type: ignore[arg-type]


def ref(text: str) -> event_pb2.ResourceRef:
    kind, name = text.split("/")
    return kref(kind, name, "" if kind == "Node" else "shop")


def test_each_relation_kind() -> None:
    graph, _keys = build_cluster()
    relator = Relator(graph)
    by_uid = event_pb2.ResourceRef(uid=uid_of("Pod", "web-1"))
    assert relator.relate(by_uid, ref("Pod/web-1"), 4) == (
        R.Value("RELATION_KIND_SAME_RESOURCE"),
        0,
    )
    assert relate(relator, "Pod/web-1", "ReplicaSet/web-abc") == ("OWNER", 1)
    assert relate(relator, "Deployment/web", "Pod/web-2") == ("OWNER", 2)
    # Same ReplicaSet (and same node): siblings.
    assert relate(relator, "Pod/web-1", "Pod/web-2") == ("SIBLING", 2)
    # Only the node in common.
    assert relate(relator, "Pod/mysql-0", "Pod/cache-0") == ("SIBLING", 2)
    assert relate(relator, "ReplicaSet/web-abc", "ReplicaSet/web-abc") == ("SAME_RESOURCE", 0)
    assert relate(relator, "Service/frontend", "Pod/web-1") == ("DEPENDENCY", 2)
    assert relate(relator, "Service/api", "Pod/mysql-0") == ("DEPENDENCY", 3)
    assert relate(relator, "ConfigMap/web-config", "Service/web") == ("DEPENDENCY", 2)
    assert relate(relator, "Pod/batch-1", "Pod/web-1") == ("UNRELATED", 0)
    assert relate(relator, "Pod/web-1", "Pod/nowhere") == ("UNKNOWN", 0)
    assert relate(relator, "Pod/nowhere", "Pod/nowhere") == ("UNKNOWN", 0)


def test_sharing_a_node_is_not_a_dependency_path() -> None:
    graph, _keys = build_cluster()
    relator = Relator(graph)
    # cache-0 -NODE- worker-1 -NODE- mysql-0 <-SELECTOR- Service mysql
    assert relate(relator, "Pod/cache-0", "Service/mysql") == ("UNRELATED", 0)


def test_sharing_a_dependency_or_a_dependent_is_no_chain() -> None:
    """Two dependents of one resource are only CONNECTED: a failure of either
    does not travel to the other, though they are linked through it."""
    graph, keys = build_cluster()
    relator = Relator(graph)
    # cache-0 and batch-1 both depend on api; frontend depends on api too.
    graph.add_edge(keys["Pod/cache-0"], keys["Service/api"], DEPENDENCY)
    graph.add_edge(keys["Pod/batch-1"], keys["Service/api"], DEPENDENCY)
    assert relate(relator, "Pod/cache-0", "Service/api") == ("DEPENDENCY", 1)
    assert relate(relator, "Pod/cache-0", "Pod/batch-1") == ("CONNECTED", 2)
    assert relate(relator, "Pod/cache-0", "Service/frontend") == ("CONNECTED", 2)
    # Linked, but farther than asked: unrelated, at max_distance + 1.
    assert relate(relator, "Pod/cache-0", "Pod/batch-1", 1) == ("UNRELATED", 2)
    # A chain is related whichever end is asked first: mysql's failure reaches
    # api, and api's reaches cache-0.
    assert relate(relator, "Pod/cache-0", "Deployment/mysql") == ("DEPENDENCY", 2)
    assert relate(relator, "Deployment/mysql", "Pod/cache-0") == ("DEPENDENCY", 2)


def test_cousins_share_an_owner_further_up() -> None:
    graph, keys = build_cluster()
    old = graph.upsert_resource(topology_pb2.Resource(ref=kref("ReplicaSet", "web-old")))
    graph.add_edge(keys["Deployment/web"], old, topology_pb2.EDGE_TYPE_OWNER)
    relator = Relator(graph)
    assert relate(relator, "ReplicaSet/web-old", "Pod/web-1") == ("SIBLING", 3)


def test_relations_farther_than_max_distance_are_unrelated() -> None:
    graph, _keys = build_cluster()
    relator = Relator(graph)
    assert relate(relator, "Service/frontend", "Pod/mysql-0", 4) == ("DEPENDENCY", 4)
    assert relate(relator, "Service/frontend", "Pod/mysql-0", 3) == ("UNRELATED", 4)
    assert relate(relator, "Deployment/web", "Pod/web-2", 1) == ("UNRELATED", 2)


def test_cached_answers_follow_graph_changes() -> None:
    graph, keys = build_cluster()
    relator = Relator(graph)
    assert relate(relator, "Pod/batch-1", "Service/frontend") == ("UNRELATED", 0)
    graph.add_edge(keys["Service/web"], keys["Pod/batch-1"], SELECTOR)
    assert relate(relator, "Pod/batch-1", "Service/frontend") == ("DEPENDENCY", 2)
    graph.delete_resource(keys["Pod/batch-1"])
    assert relate(relator, "Pod/batch-1", "Service/frontend") == ("UNKNOWN", 0)


def test_bidirectional_search_finds_the_shortest_distance() -> None:
    graph, keys = build_cluster()
    types = tuple(topology_pb2.EdgeType.values())[1:]
    frontend, pvc = keys["Service/frontend"], keys["PersistentVolumeClaim/data-mysql-0"]
    assert shortest_distance(graph, frontend, pvc, 10, types) == 5
    assert shortest_distance(graph, pvc, frontend, 10, types) == 5
    assert shortest_distance(graph, frontend, pvc, 4, types) is None


def test_components_stay_sound_as_edges_come_and_go() -> None:
    """linked() may say "perhaps" after removals, never "no" wrongly; once
    removals pile up it is rebuilt and says "no" again."""
    graph, keys = build_cluster()
    relator = Relator(graph)
    web, mysql = keys["Pod/web-1"], keys["Pod/mysql-0"]
    assert graph.linked(web, mysql)  # through the declared api -> mysql chain
    assert relate(relator, "Pod/batch-1", "Pod/web-1") == ("UNRELATED", 0)
    assert not graph.linked(keys["Pod/batch-1"], web)
    # Cut frontend off from web: web's side is a component of its own now.
    graph.remove_edge(keys["Service/frontend"], keys["Service/web"], DEPENDENCY)
    # Perhaps still linked, as far as the stale components know: not "apart".
    assert relate(relator, "Pod/web-1", "Pod/mysql-0") == ("UNRELATED", 5)
    graph._components.stale = 10**6  # as if many removals had happened
    assert not graph.linked(web, mysql)
    assert relate(Relator(graph), "Pod/web-1", "Pod/mysql-0") == ("UNRELATED", 0)
    graph.add_edge(keys["Pod/batch-1"], web, DEPENDENCY)
    assert graph.linked(keys["Pod/batch-1"], web)
    assert relate(relator, "Pod/batch-1", "Pod/web-1") == ("DEPENDENCY", 1)
    # web-2 shares Service web with web-1, but a failure of either does not
    # travel to the other through it: batch-1 and web-2 are only linked.
    assert relate(relator, "Pod/batch-1", "Pod/web-2") == ("CONNECTED", 3)


def test_a_batch_answers_as_pair_by_pair_and_names_pairs_without_uids() -> None:
    graph, keys = build_cluster()
    names = [*sorted(keys), "Pod/nowhere"]
    refs = []
    for name in names:
        kind, short = name.split("/")
        by_name = ref(name) if kind != "Service" else kref(kind, short)
        refs.append(by_name)
        resource = graph.resources.get(keys.get(name, ("", "")))
        if resource is not None and resource.ref.uid:
            refs.append(resource.ref)  # the same resource by uid
    pairs = [topology_pb2.ResourcePair(a=a, b=b) for a in refs for b in refs]
    pairs.append(topology_pb2.ResourcePair(b=refs[0]))  # an end missing
    for max_distance in (1, 3, 4):
        relator = Relator(graph)
        answers, without_uid = relator.relate_pairs(pairs, max_distance)
        expected = [Relator(graph).relate(p.a, p.b, max_distance) for p in pairs]
        assert answers == expected
        assert without_uid == [i for i, p in enumerate(pairs) if not p.a.uid or not p.b.uid]
    # Answers follow the graph changing between batches.
    relator = Relator(graph)
    pair = [topology_pb2.ResourcePair(a=ref("Pod/batch-1"), b=kref("Service", "frontend"))]
    assert relator.relate_pairs(pair, 4)[0] == [(R.Value("RELATION_KIND_UNRELATED"), 0)]
    graph.add_edge(keys["Service/web"], keys["Pod/batch-1"], SELECTOR)
    assert relator.relate_pairs(pair, 4)[0] == [(R.Value("RELATION_KIND_DEPENDENCY"), 2)]


def test_relations_response_round_trips() -> None:
    relations: list[tuple[int, int]] = [
        (int(R.Value("RELATION_KIND_UNRELATED")), 0),
        (int(R.Value("RELATION_KIND_OWNER")), 300),
    ]
    response = relations_response(relations * 100)
    assert [(r.index, r.kind, r.distance) for r in response.relations] == [
        (i, *relations[i % 2]) for i in range(200)
    ]
