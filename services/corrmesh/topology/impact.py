"""Blast radius: everything a failing resource takes down with it.

Failure travels along each edge type in the direction
:data:`corrmesh.topology.graph.PROPAGATES_FORWARD` gives (a Node's failure
reaches its Pods, a Pod's reaches its ReplicaSet and the Services selecting
it, a dependency's reaches its dependents). A breadth-first walk in those
directions finds each impacted resource at its shortest distance, and the
path that reached it explains why it is affected.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key
from corrmesh.topology.wire import delimited, tag, varint
from corrmesh.v1 import topology_pb2

#: Names shown per group in a summary before "and N more".
SUMMARY_NAMES = 3


@dataclass(frozen=True)
class Impacted:
    """A resource a failure reaches; ``path`` runs from the failing one to it."""

    key: Key
    path: tuple[Key, ...]
    distance: int


@dataclass(frozen=True)
class Impact:
    root: Key
    impacted: list[Impacted]
    summary: str


@dataclass(frozen=True)
class Walk:
    """Where a failure of ``root`` reached: each resource (breadth first, with
    its distance) and the resource it was reached from."""

    root: Key
    reached: list[tuple[Key, int]]
    parent: dict[Key, Key]

    def path(self, key: Key) -> tuple[Key, ...]:
        """From the root to ``key``, both included."""
        parent = self.parent
        path = [key]
        while key != self.root:
            key = parent[key]
            path.append(key)
        path.reverse()
        return tuple(path)


def walk(graph: TopologyGraph, root: Key, max_depth: int) -> Walk:
    """Breadth-first walk from ``root`` along the edges failure travels, up to
    ``max_depth`` edges; each resource is reached at its shortest distance."""
    spread = graph.spread
    parent: dict[Key, Key] = {root: root}
    reached: list[tuple[Key, int]] = []
    frontier = [root]
    for distance in range(1, max_depth + 1):
        next_frontier: list[Key] = []
        for current in frontier:
            for key in spread(current):
                if key not in parent:
                    parent[key] = current
                    reached.append((key, distance))
                    next_frontier.append(key)
        if not next_frontier:
            break
        frontier = next_frontier
    return Walk(root, reached, parent)


def _reported(graph: TopologyGraph, found: Walk, kinds: Collection[str]) -> list[tuple[Key, int]]:
    if not kinds:
        return found.reached
    view = graph.view
    return [(key, distance) for key, distance in found.reached if view(key)[1] in kinds]


def impact(graph: TopologyGraph, root: Key, max_depth: int, kinds: Collection[str] = ()) -> Impact:
    """What a failure of ``root`` affects within ``max_depth`` edges.

    ``kinds`` restricts what is reported, not what is walked: a Service
    reached through Pods is found even when Pods are not asked for.
    """
    found = walk(graph, root, max_depth)
    reported = _reported(graph, found, kinds)
    impacted = [Impacted(key, found.path(key), distance) for key, distance in reported]
    return Impact(root, impacted, summarize(graph, root, reported))


def impact_response(
    graph: TopologyGraph, root: Key, max_depth: int, kinds: Collection[str] = ()
) -> topology_pb2.GetImpactResponse:
    """The GetImpactResponse for a failure of ``root``, as :func:`impact` finds it.

    Built from wire bytes (see :mod:`corrmesh.topology.wire`): each path is
    its parent's path plus one cached ref.
    """
    found = walk(graph, root, max_depth)
    view = graph.view
    parent = found.parent
    root_data, root_kind, root_name = view(root)
    paths: dict[Key, bytes] = {root: _PATH + root_data}
    parts = [_ROOT + root_data]
    named: list[tuple[str, str, int]] = []
    for key, distance in found.reached:  # parents come before their children
        data, kind, name = view(key)
        path = paths[key] = paths[parent[key]] + _PATH + data
        if kinds and kind not in kinds:
            continue
        entry = _RESOURCE + data + path + _DISTANCE + varint(distance)
        parts.append(_IMPACTED + varint(len(entry)) + entry)
        named.append((kind, name, distance))
    parts.append(delimited(_SUMMARY, _summary(root_kind, root_name, named).encode()))
    return topology_pb2.GetImpactResponse.FromString(b"".join(parts))


# Field keys of ImpactedResource and GetImpactResponse (topology.proto).
_RESOURCE, _PATH, _DISTANCE = tag(1, 2), tag(2, 2), tag(3, 0)
_ROOT, _IMPACTED, _SUMMARY = tag(1, 2), tag(2, 2), tag(3, 2)


def summarize(graph: TopologyGraph, root: Key, impacted: Sequence[tuple[Key, int]]) -> str:
    """One line, one hop per distance: "Deployment mysql down -> Service api -> ...".

    ``impacted`` holds (resource, distance) pairs. Several resources of one
    kind at the same distance are grouped ("pods web-1, web-2"); kinds at the
    same distance are separated by "; ".
    """
    view = graph.view
    _data, root_kind, root_name = view(root)
    named = []
    for key, distance in impacted:
        _data, kind, name = view(key)
        named.append((kind, name, distance))
    return _summary(root_kind, root_name, named)


def _summary(root_kind: str, root_name: str, named: Sequence[tuple[str, str, int]]) -> str:
    head = f"{root_kind} {root_name} down"
    if not named:
        return f"{head}; nothing depends on it"
    levels: dict[int, dict[str, list[str]]] = {}
    for kind, name, distance in named:
        levels.setdefault(distance, {}).setdefault(kind, []).append(name)
    hops = [head]
    for distance in sorted(levels):
        groups = [_group(kind, names) for kind, names in levels[distance].items()]
        hops.append("; ".join(groups))
    return " -> ".join(hops)


def _group(kind: str, names: list[str]) -> str:
    if len(names) == 1:
        return f"{kind} {names[0]}"
    shown = ", ".join(names[:SUMMARY_NAMES])
    if len(names) > SUMMARY_NAMES:
        shown += f" and {len(names) - SUMMARY_NAMES} more"
    return f"{_plural(kind)} {shown}"


def _plural(kind: str) -> str:
    word = kind.lower()
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"
