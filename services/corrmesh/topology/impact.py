"""Blast radius: everything a failing resource takes down with it.

Failure travels along each edge type in the direction
:data:`corrmesh.topology.graph.PROPAGATES_FORWARD` gives (a Node's failure
reaches its Pods, a Pod's reaches its ReplicaSet and the Services selecting
it, a dependency's reaches its dependents). A breadth-first walk in those
directions finds each impacted resource at its shortest distance, and the
path that reached it explains why it is affected.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from corrmesh.topology.graph import PROPAGATES_FORWARD, TopologyGraph
from corrmesh.topology.keys import Key

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


def impact(graph: TopologyGraph, root: Key, max_depth: int, kinds: Collection[str] = ()) -> Impact:
    """What a failure of ``root`` affects within ``max_depth`` edges.

    ``kinds`` restricts what is reported, not what is walked: a Service
    reached through Pods is found even when Pods are not asked for.
    """
    # Which adjacency map each edge type propagates failure along.
    forward = tuple(t for t, f in PROPAGATES_FORWARD.items() if f)
    backward = tuple(t for t, f in PROPAGATES_FORWARD.items() if not f)
    outgoing, incoming = graph.adjacency()
    paths: dict[Key, tuple[Key, ...]] = {root: (root,)}
    reached: list[tuple[Key, int]] = []
    frontier = [root]
    for distance in range(1, max_depth + 1):
        next_frontier: list[Key] = []
        for current in frontier:
            path = paths[current]
            for adjacency, edge_types in ((outgoing, forward), (incoming, backward)):
                by_type = adjacency.get(current)
                if not by_type:
                    continue
                for edge_type in edge_types:
                    neighbours = by_type.get(edge_type)
                    if not neighbours:
                        continue
                    for key in neighbours:
                        if key not in paths:
                            paths[key] = (*path, key)
                            reached.append((key, distance))
                            next_frontier.append(key)
        if not next_frontier:
            break
        frontier = next_frontier
    resources = graph.resources
    impacted = [
        Impacted(key, paths[key], distance)
        for key, distance in reached
        if not kinds or resources[key].ref.kind in kinds
    ]
    return Impact(root, impacted, summarize(graph, root, impacted))


def summarize(graph: TopologyGraph, root: Key, impacted: list[Impacted]) -> str:
    """One line, one hop per distance: "Deployment mysql down -> Service api -> ...".

    Several resources of one kind at the same distance are grouped
    ("pods web-1, web-2"); kinds at the same distance are separated by "; ".
    """
    root_ref = graph.resources[root].ref
    head = f"{root_ref.kind} {root_ref.name} down"
    if not impacted:
        return f"{head}; nothing depends on it"
    levels: dict[int, dict[str, list[str]]] = {}
    for item in impacted:
        ref = graph.resources[item.key].ref
        levels.setdefault(item.distance, {}).setdefault(ref.kind, []).append(ref.name)
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
