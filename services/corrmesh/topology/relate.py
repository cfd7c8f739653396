"""How two resources relate: the correlation engine's hot path.

The strongest relation wins, in RelationKind's order:

- SAME_RESOURCE: both refs name one resource (distance 0);
- OWNER: one is in the other's owner chain (distance = OWNER edges between);
- SIBLING: they share an owner anywhere up their chains (distance = edges
  through the nearest common owner) or run on the same Node (distance 2);
- DEPENDENCY: a failure of one can travel to the other along at most
  ``max_distance`` edges of any type but NODE, each walked the way failure
  travels on it (:data:`corrmesh.topology.graph.PROPAGATES_FORWARD`). Two
  resources that merely share something (two Pods on one Node, two callers
  of one service, two Pods mounting one ConfigMap) are not a chain through
  it: if the shared resource fails, each relates to it directly;
- CONNECTED: no failure path, but linked within ``max_distance`` edges walked
  either way (those two Pods, those two callers, a caller's Pod and the Pod
  behind the service it calls): the correlation engine counts it only for
  events seconds apart, where a shared cause is the likely story;
- UNRELATED otherwise, at distance ``max_distance + 1`` when a longer path
  links them and 0 when nothing does (separate parts of the graph: what the
  correlation engine calls an isolated resource), and UNKNOWN when either
  is not in the graph.

Every relation farther than ``max_distance`` counts as unrelated. Answers
are cached per pair until the graph next changes, since the correlation
engine asks about the same pairs over and over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from corrmesh.topology.graph import (
    ALL_EDGE_TYPES,
    NODE,
    PROPAGATES_FORWARD,
    EdgeType,
    TopologyGraph,
)
from corrmesh.topology.keys import Key
from corrmesh.topology.walks import owners
from corrmesh.topology.wire import tag, varint
from corrmesh.v1 import event_pb2, topology_pb2

DEFAULT_MAX_DISTANCE = 4
MAX_DISTANCE = 16
#: Cached answers kept before the cache is dropped and refilled.
CACHE_LIMIT = 100_000

SAME_RESOURCE = topology_pb2.RELATION_KIND_SAME_RESOURCE
OWNER_RELATION = topology_pb2.RELATION_KIND_OWNER
SIBLING = topology_pb2.RELATION_KIND_SIBLING
DEPENDENCY = topology_pb2.RELATION_KIND_DEPENDENCY
CONNECTED = topology_pb2.RELATION_KIND_CONNECTED
UNRELATED = topology_pb2.RELATION_KIND_UNRELATED
UNKNOWN = topology_pb2.RELATION_KIND_UNKNOWN

DEPENDENCY_EDGE_TYPES: tuple[EdgeType, ...] = tuple(t for t in ALL_EDGE_TYPES if t != NODE)

Relation = tuple[int, int]


class Relator:
    """Answers relate() over one graph, caching until the graph changes."""

    def __init__(self, graph: TopologyGraph) -> None:
        self.graph = graph
        self._cache: dict[tuple[Key, Key, int], Relation] = {}
        self._version = graph.version

    def _fresh_cache(self) -> dict[tuple[Key, Key, int], Relation]:
        if self.graph.version != self._version or len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
            self._version = self.graph.version
        return self._cache

    def relate(
        self, a: event_pb2.ResourceRef, b: event_pb2.ResourceRef, max_distance: int
    ) -> Relation:
        """(RelationKind, distance) of the resources ``a`` and ``b`` name."""
        graph = self.graph
        key_a = graph.resolve(a)
        key_b = graph.resolve(b)
        if key_a is None or key_b is None:
            return (UNKNOWN, 0)
        if key_a == key_b:
            return (SAME_RESOURCE, 0)
        cache = self._fresh_cache()
        cache_key = (key_a, key_b, max_distance)
        answer = cache.get(cache_key)
        if answer is None:
            answer = relate_keys(graph, key_a, key_b, max_distance)
            cache[cache_key] = answer
        return answer

    def relate_pairs(
        self, pairs: Iterable[topology_pb2.ResourcePair], max_distance: int
    ) -> tuple[list[Relation], list[int]]:
        """relate() of each pair, in order, and the indices of pairs with an end
        named without a uid (the only ones a caller needs to validate in full).

        The batch the correlation engine sends: most pairs lie in different
        components of the graph, which one union-find lookup per end settles
        without a search, so that case runs inline without touching the cache.
        """
        graph = self.graph
        resources = graph.resources
        resolve = graph.resolve
        links = graph.components()
        find = graph.find
        incoming = graph.adjacency()[1]
        cache = self._fresh_cache()
        shared_node = (SIBLING, 2) if max_distance >= 2 else (UNRELATED, 0)
        answers: list[Relation] = []
        answer = answers.append
        without_uid: list[int] = []
        for index, pair in enumerate(pairs):
            a, b = pair.a, pair.b
            uid_a, uid_b = a.uid, b.uid
            if not uid_a or not uid_b:
                without_uid.append(index)
            key_a: Key | None = ("uid", uid_a)
            if key_a not in resources:
                key_a = resolve(a)
            key_b: Key | None = ("uid", uid_b)
            if key_b not in resources:
                key_b = resolve(b)
            if key_a is None or key_b is None:
                answer(_UNKNOWN)
                continue
            if key_a == key_b:
                answer(_SAME)
                continue
            # Roots in the union-find; after path compression one hop mostly.
            root_a = links.get(key_a, key_a)
            if links.get(root_a, root_a) != root_a:
                root_a = find(key_a)
            root_b = links.get(key_b, key_b)
            if links.get(root_b, root_b) != root_b:
                root_b = find(key_b)
            if root_a != root_b:
                # Not linked: nothing but a shared Node can relate them.
                into_a = incoming.get(key_a)
                nodes_a = into_a.get(NODE) if into_a else None
                if nodes_a:
                    into_b = incoming.get(key_b)
                    nodes_b = into_b.get(NODE) if into_b else None
                    if nodes_b and not nodes_a.keys().isdisjoint(nodes_b):
                        answer(shared_node)
                        continue
                answer(_UNRELATED)
                continue
            cache_key = (key_a, key_b, max_distance)
            found = cache.get(cache_key)
            if found is None:
                found = cache[cache_key] = relate_keys(graph, key_a, key_b, max_distance)
            answer(found)
        return answers, without_uid


def relations_response(relations: list[Relation]) -> topology_pb2.RelateResourcesResponse:
    """The RelateResourcesResponse for ``relations`` in pair order, assembled as
    wire bytes (a thousand relations cost half what filling them in does)."""
    tails: dict[Relation, bytes] = {}
    parts = []
    for index, relation in enumerate(relations):
        tail = tails.get(relation)
        if tail is None:
            kind, distance = relation
            tail = tails[relation] = _KIND + varint(kind) + _DISTANCE + varint(distance)
        body = _INDEX + varint(index) + tail
        parts.append(_RELATION + varint(len(body)) + body)
    return topology_pb2.RelateResourcesResponse.FromString(b"".join(parts))


# Field keys of ResourceRelation and RelateResourcesResponse (topology.proto).
_INDEX, _KIND, _DISTANCE, _RELATION = tag(1, 0), tag(2, 0), tag(3, 0), tag(1, 2)
_UNKNOWN: Relation = (UNKNOWN, 0)
_SAME: Relation = (SAME_RESOURCE, 0)
_UNRELATED: Relation = (UNRELATED, 0)


def relate_keys(graph: TopologyGraph, a: Key, b: Key, max_distance: int) -> Relation:
    """The relation of two different resources in ``graph`` (uncached)."""
    if not graph.linked(a, b):
        # Nothing but a shared Node can relate them.
        nodes_a = graph.incoming(a, NODE)
        if nodes_a and any(node in nodes_a for node in graph.incoming(b, NODE)):
            return (SIBLING, 2) if max_distance >= 2 else (UNRELATED, 0)
        return (UNRELATED, 0)
    owners_a = owners(graph, a)
    owners_b = owners(graph, b)
    owner_distances = [d for d in (owners_b.get(a), owners_a.get(b)) if d is not None]
    if owner_distances and min(owner_distances) <= max_distance:
        return (OWNER_RELATION, min(owner_distances))
    sibling = _sibling_distance(graph, a, b, owners_a, owners_b)
    if sibling is not None and sibling <= max_distance:
        return (SIBLING, sibling)
    distance = propagation_distance(graph, a, b, max_distance)
    if distance is not None:
        return (DEPENDENCY, distance)
    distance = shortest_distance(graph, a, b, max_distance, ALL_EDGE_TYPES)
    if distance is not None:
        return (CONNECTED, distance)
    return (UNRELATED, max_distance + 1)


def _sibling_distance(
    graph: TopologyGraph, a: Key, b: Key, owners_a: dict[Key, int], owners_b: dict[Key, int]
) -> int | None:
    candidates = [owners_a[o] + owners_b[o] for o in owners_a.keys() & owners_b.keys()]
    nodes_a = graph.incoming(a, NODE)
    if nodes_a and any(node in nodes_a for node in graph.incoming(b, NODE)):
        candidates.append(2)
    return min(candidates) if candidates else None


#: (edge type, walked along its direction) pairs a failure travels over, NODE aside.
_DOWNSTREAM = tuple((t, PROPAGATES_FORWARD[t]) for t in ALL_EDGE_TYPES if t != NODE)
_UPSTREAM = tuple((t, not forward) for t, forward in _DOWNSTREAM)


def _stepper(
    graph: TopologyGraph, steps: tuple[tuple[EdgeType, bool], ...]
) -> Callable[[Key], Iterator[Key]]:
    outgoing, incoming = graph.adjacency()

    def neighbours(key: Key) -> Iterator[Key]:
        for edge_type, along in steps:
            by_type = (outgoing if along else incoming).get(key)
            if by_type:
                yield from by_type.get(edge_type, ())

    return neighbours


def propagation_distance(graph: TopologyGraph, a: Key, b: Key, limit: int) -> int | None:
    """Edges on the shortest path a failure of one of ``a``, ``b`` travels to the
    other, if ≤ ``limit``; None when neither reaches the other that closely."""
    down = _stepper(graph, _DOWNSTREAM)
    up = _stepper(graph, _UPSTREAM)
    found = [
        d
        for d in (
            _meet(graph, a, b, limit, down, up),
            _meet(graph, b, a, limit, down, up),
        )
        if d is not None
    ]
    return min(found) if found else None


def _meet(
    graph: TopologyGraph,
    a: Key,
    b: Key,
    limit: int,
    forward: Callable[[Key], Iterable[Key]],
    backward: Callable[[Key], Iterable[Key]],
) -> int | None:
    """Edges on the shortest path from ``a`` to ``b`` whose steps ``forward``
    gives (``backward`` gives them reversed), if ≤ ``limit``.

    Bidirectional breadth-first search that always expands the side whose
    frontier has fewer edges to follow, so a hub (a ConfigMap mounted by every
    Pod) is entered from the other side, where it is found and not expanded.
    """
    if a == b:
        return 0
    degree = graph.degree
    seen_a = {a: 0}
    seen_b = {b: 0}
    frontier_a = [a]
    frontier_b = [b]
    cost_a, cost_b = degree(a), degree(b)
    depth_a = depth_b = 0
    while frontier_a and frontier_b and depth_a + depth_b < limit:
        expand_a = cost_a <= cost_b
        frontier, seen, other, step = (
            (frontier_a, seen_a, seen_b, forward)
            if expand_a
            else (frontier_b, seen_b, seen_a, backward)
        )
        depth = (depth_a if expand_a else depth_b) + 1
        next_frontier: list[Key] = []
        cost = 0
        for current in frontier:
            for neighbour in step(current):
                if neighbour in seen:
                    continue
                if neighbour in other:
                    # Every node the other side has seen so far is at most its
                    # depth away, and no earlier level met it, so this is shortest.
                    return depth + other[neighbour]
                seen[neighbour] = depth
                next_frontier.append(neighbour)
                cost += degree(neighbour)
        if expand_a:
            frontier_a, depth_a, cost_a = next_frontier, depth, cost
        else:
            frontier_b, depth_b, cost_b = next_frontier, depth, cost
    return None


def shortest_distance(
    graph: TopologyGraph, a: Key, b: Key, limit: int, edge_types: tuple[EdgeType, ...]
) -> int | None:
    """Edges on the shortest undirected path between ``a`` and ``b``, if ≤ ``limit``."""

    def either_way(key: Key) -> Iterable[Key]:
        return graph.adjacent(key, edge_types)

    return _meet(graph, a, b, limit, either_way, either_way)
