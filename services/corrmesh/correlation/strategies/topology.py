"""``topology``: resources Topology says are related, inside the window.

Scores: the same resource 1.0 (known without asking), OWNER 0.95 (a pod and
its ReplicaSet or Deployment), SIBLING 0.75 (one owner or one node),
DEPENDENCY ``0.9 · 0.7^(distance-1)`` (0.9 for a direct dependency such as
``api -> mysql``, 0.63 two hops away, 0.44 three: below the default minimum
score, so a long path alone does not join), CONNECTED 0.6 but only for events
at most :data:`CONNECTED_WITHIN_SECONDS` apart: resources linked without a
failure path between them (two Pods on one Node in a declared topology, a
caller's Pod and the Pod behind the service it calls) that fail within
seconds of each other are the onset of one incident far more often than two
(the Pods of a partitioned Node, the callers of what it hosts), while minutes
apart they are no evidence at all. Works for Kubernetes objects and declared
dependencies alike: Topology answers for both.
"""

from __future__ import annotations

from corrmesh.correlation.resources import describe, owner_sentence, same_resource
from corrmesh.correlation.strategies import (
    RESOURCE,
    TOPOLOGY,
    Match,
    Strategy,
    StrategyContext,
    register,
)
from corrmesh.correlation.strategies.signals import seconds_apart
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import topology_pb2

NAME = "topology"
OWNER_SCORE = 0.95
SIBLING_SCORE = 0.75
DEPENDENCY_SCORE = 0.9
DEPENDENCY_DECAY = 0.7
CONNECTED_SCORE = 0.6
CONNECTED_WITHIN_SECONDS = 10
CONNECTED_WITHIN_US = CONNECTED_WITHIN_SECONDS * 1_000_000


def dependency_score(distance: int) -> float:
    return DEPENDENCY_SCORE * DEPENDENCY_DECAY ** max(0, distance - 1)


class TopologyStrategy(Strategy):
    name = NAME
    indexes = frozenset({RESOURCE, TOPOLOGY})
    uses_topology = True

    def applies_to(self, event: EventInfo) -> bool:
        return bool(event.resource_key)

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if not candidate.resource_key:
            return None
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        a, b = candidate.resource, new_event.resource
        same_key = candidate.resource_key == new_event.resource_key
        if (same_key or (a.uid and a.uid == b.uid)) and same_resource(a, b):
            apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
            return Match(1.0, NAME, f"same resource {describe(b)}, {apart}")
        relation = context.relation(new_event.resource_key, candidate.resource_key)
        if relation is None:
            return None
        kind, distance = relation
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        if kind == topology_pb2.RELATION_KIND_SAME_RESOURCE:
            return Match(1.0, NAME, f"same resource {describe(b)} per topology, {apart}")
        if kind == topology_pb2.RELATION_KIND_OWNER:
            return Match(OWNER_SCORE, NAME, f"{owner_sentence(a, b)}, {apart}")
        if kind == topology_pb2.RELATION_KIND_SIBLING:
            text = f"{describe(a)} and {describe(b)} share an owner or a node"
            return Match(SIBLING_SCORE, NAME, f"{text}, {apart}")
        if kind == topology_pb2.RELATION_KIND_DEPENDENCY:
            hops = "a direct dependency" if distance <= 1 else f"dependencies {distance} hops apart"
            text = f"{describe(a)} and {describe(b)} are joined by {hops}"
            return Match(dependency_score(distance), NAME, f"{text}, {apart}")
        if (
            kind == topology_pb2.RELATION_KIND_CONNECTED
            and abs(new_event.occurred_us - candidate.occurred_us) <= CONNECTED_WITHIN_US
        ):
            text = f"{describe(a)} and {describe(b)} are linked {distance} hops apart"
            return Match(CONNECTED_SCORE, NAME, f"{text} and failed together, {apart}")
        return None


register(TopologyStrategy)
