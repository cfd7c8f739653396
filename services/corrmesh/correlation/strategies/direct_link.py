"""``direct_link``: the same fingerprint, the same resource, or resources
Topology says are directly related, inside the temporal window.

Scores: fingerprint 1.0, same resource 1.0, Topology SAME_RESOURCE 1.0,
OWNER 0.95, SIBLING 0.9, DEPENDENCY at distance 1 0.8. A declared dependency
(``api`` depends on ``mysql``) joins because an outage of a dependency and
the errors of its direct dependents are the incident this service exists to
group; longer dependency paths do not join here (two hops away is too weak
a signal alone; the weighted Topology strategy of the full engine scores
them by distance).
"""

from __future__ import annotations

from corrmesh.correlation.resources import describe, owner_sentence, same_resource
from corrmesh.correlation.strategies import Match, Strategy, StrategyContext, register
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import topology_pb2

NAME = "direct_link"

_TOPOLOGY_SCORES: dict[int, float] = {
    topology_pb2.RELATION_KIND_SAME_RESOURCE: 1.0,
    topology_pb2.RELATION_KIND_OWNER: 0.95,
    topology_pb2.RELATION_KIND_SIBLING: 0.9,
    topology_pb2.RELATION_KIND_DEPENDENCY: 0.8,
}
#: Longest dependency path that still joins (see the module docstring).
MAX_DEPENDENCY_DISTANCE = 1


def seconds_apart(a_us: int, b_us: int) -> str:
    """``"12 s apart"``: whole seconds, one decimal below ten seconds."""
    seconds = abs(a_us - b_us) / 1_000_000
    rounded = round(seconds, 1) if seconds < 10 else round(seconds)
    text = f"{rounded:g}"
    return f"{text} s apart"


class DirectLinkStrategy(Strategy):
    """Fingerprint, resource or Topology relation, within the window."""

    name = NAME
    uses_topology = True

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        if new_event.fingerprint and new_event.fingerprint == candidate.fingerprint:
            return Match(1.0, NAME, f"same fingerprint {new_event.fingerprint}, {apart}")
        if not new_event.resource_key or not candidate.resource_key:
            return None
        if same_resource(new_event.resource, candidate.resource):
            return Match(1.0, NAME, f"same resource {describe(new_event.resource)}, {apart}")
        relation = context.relation(new_event.resource_key, candidate.resource_key)
        if relation is None:
            return None
        kind, distance = relation
        score = _TOPOLOGY_SCORES.get(int(kind))
        if score is None:
            return None
        a, b = candidate.resource, new_event.resource
        if kind == topology_pb2.RELATION_KIND_SAME_RESOURCE:
            text = f"same resource {describe(b)} per topology"
        elif kind == topology_pb2.RELATION_KIND_OWNER:
            text = owner_sentence(a, b)
        elif kind == topology_pb2.RELATION_KIND_SIBLING:
            text = f"{describe(a)} and {describe(b)} share an owner or a node"
        else:
            if distance > MAX_DEPENDENCY_DISTANCE:
                return None
            text = f"{describe(a)} and {describe(b)} are joined by a direct dependency"
        return Match(score, NAME, f"{text}, {apart}")


register(DirectLinkStrategy)
