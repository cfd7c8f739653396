"""Walks over the graph: owners, owner chains, neighbourhoods, shortest paths.

Each walk reads :class:`~corrmesh.topology.graph.TopologyGraph` and never
changes it. A walk follows edges in a direction (``OUTGOING`` from the
stored ``from`` to ``to``, ``INCOMING`` against it, or ``BOTH``) and reports
edges as stored, whichever way it crossed them. Neighbours are visited in
the graph's insertion order, so every answer is deterministic.

Walks that follow only the direction failure travels stay with their
users: :mod:`corrmesh.topology.impact` and :mod:`corrmesh.topology.relate`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from corrmesh.topology.graph import (
    ALL_EDGE_TYPES,
    OWNER,
    Adjacency,
    EdgeKey,
    EdgeType,
    TopologyGraph,
)
from corrmesh.topology.keys import Key
from corrmesh.v1 import topology_pb2

OUTGOING = topology_pb2.DIRECTION_OUTGOING
INCOMING = topology_pb2.DIRECTION_INCOMING
BOTH = topology_pb2.DIRECTION_BOTH


@dataclass(frozen=True)
class Hit:
    """A resource reached by a traversal, the edge that reached it and how far it is."""

    key: Key
    edge: EdgeKey
    distance: int


def owners(graph: TopologyGraph, key: Key) -> dict[Key, int]:
    """Every owner of ``key`` (following incoming OWNER edges) with its distance."""
    found: dict[Key, int] = {}
    frontier = [key]
    distance = 0
    while frontier:
        distance += 1
        next_frontier: list[Key] = []
        for current in frontier:
            for owner in graph.incoming(current, OWNER):
                if owner not in found and owner != key:
                    found[owner] = distance
                    next_frontier.append(owner)
        frontier = next_frontier
    return found


def owner_chain(graph: TopologyGraph, key: Key) -> list[Key]:
    """``key`` then its owners, nearest first; the first owner at each step
    (Kubernetes objects have at most one controller), stopping at a cycle."""
    chain = [key]
    seen = {key}
    current = key
    while True:
        owner = next(iter(graph.incoming(current, OWNER)), None)
        if owner is None or owner in seen:
            return chain
        chain.append(owner)
        seen.add(owner)
        current = owner


def neighbors(
    graph: TopologyGraph, key: Key, edge_types: Iterable[EdgeType], direction: int, depth: int
) -> list[Hit]:
    """Resources within ``depth`` edges of ``key`` (breadth first, nearest first)."""
    types = tuple(edge_types) or ALL_EDGE_TYPES
    outgoing, incoming = graph.adjacency()
    seen = {key}
    hits: list[Hit] = []
    frontier = [key]
    for distance in range(1, depth + 1):
        next_frontier: list[Key] = []
        for current in frontier:
            for neighbour, edge in _steps(outgoing, incoming, current, types, direction):
                if neighbour not in seen:
                    seen.add(neighbour)
                    hits.append(Hit(neighbour, edge, distance))
                    next_frontier.append(neighbour)
        if not next_frontier:
            break
        frontier = next_frontier
    return hits


def find_path(
    graph: TopologyGraph,
    source: Key,
    target: Key,
    max_depth: int,
    edge_types: Iterable[EdgeType] = (),
) -> list[EdgeKey] | None:
    """The shortest path from ``source`` to ``target`` as stored edges, walking
    edges either way; None when none is within ``max_depth`` edges."""
    if source == target:
        return []
    types = tuple(edge_types) or ALL_EDGE_TYPES
    outgoing, incoming = graph.adjacency()
    reached_by: dict[Key, EdgeKey | None] = {source: None}
    queue: deque[tuple[Key, int]] = deque([(source, 0)])
    while queue:
        current, distance = queue.popleft()
        if distance >= max_depth:
            continue
        for neighbour, edge in _steps(outgoing, incoming, current, types, BOTH):
            if neighbour in reached_by:
                continue
            reached_by[neighbour] = edge
            if neighbour == target:
                return _trace_back(reached_by, source, target)
            queue.append((neighbour, distance + 1))
    return None


def _steps(
    outgoing: Adjacency,
    incoming: Adjacency,
    key: Key,
    edge_types: Iterable[EdgeType],
    direction: int,
) -> Iterator[tuple[Key, EdgeKey]]:
    """(neighbour, edge as stored) for each edge of ``edge_types`` leaving ``key``
    in ``direction`` (OUTGOING, INCOMING or BOTH)."""
    out = outgoing.get(key)
    inc = incoming.get(key)
    for edge_type in edge_types:
        if direction != INCOMING and out is not None:
            for target in out.get(edge_type, ()):
                yield target, (key, target, edge_type)
        if direction != OUTGOING and inc is not None:
            for source in inc.get(edge_type, ()):
                yield source, (source, key, edge_type)


def _trace_back(reached_by: dict[Key, EdgeKey | None], source: Key, target: Key) -> list[EdgeKey]:
    path: list[EdgeKey] = []
    current = target
    while current != source:
        edge = reached_by[current]
        assert edge is not None
        path.append(edge)
        current = edge[0] if edge[1] == current else edge[1]
    path.reverse()
    return path
