"""Candidates from Topology: recent events of the resources it relates to an event's.

``prepare`` lists the resources with recent events in the event's cluster; once
Topology has answered for each pair, the events of the related ones become
candidates: within the window, or for CONNECTED resources (linked without a
failure path) only within seconds (see the topology strategy).
"""

from __future__ import annotations

from collections.abc import Callable

from corrmesh.correlation.coincidence import apart_from_all
from corrmesh.correlation.plans import Candidate, Plan
from corrmesh.correlation.strategies import Relation
from corrmesh.correlation.strategies.topology import CONNECTED_WITHIN_US
from corrmesh.correlation.window import EventWindow
from corrmesh.v1 import topology_pb2

#: Events read per related resource, newest first.
EVENTS_PER_RESOURCE = 4
#: Topology answers that make a neighbour's events candidates.
RELATED_KINDS = frozenset(
    {
        topology_pb2.RELATION_KIND_SAME_RESOURCE,
        topology_pb2.RELATION_KIND_OWNER,
        topology_pb2.RELATION_KIND_SIBLING,
        topology_pb2.RELATION_KIND_DEPENDENCY,
        topology_pb2.RELATION_KIND_CONNECTED,
    }
)


def related_candidates(
    plan: Plan,
    relation: Callable[[str, str], Relation | None],
    window: EventWindow,
    window_us: int,
    bit: int,
) -> tuple[list[Candidate], bool]:
    """``plan``'s candidates plus recent events of the neighbours Topology
    relates (found by ``bit``), and whether nothing links it to any of them
    (see :mod:`corrmesh.correlation.coincidence`)."""
    info = plan.event
    found: dict[str, Candidate] | None = None
    extra: list[Candidate] = []
    answers = [relation(info.resource_key, key) for key, _ref in plan.neighbours]
    for (key, _ref), answer in zip(plan.neighbours, answers, strict=True):
        if answer is None or answer[0] not in RELATED_KINDS:
            continue
        if found is None:
            found = {c.event.event_id: c for c in plan.candidates}
        reach = (
            CONNECTED_WITHIN_US if answer[0] == topology_pb2.RELATION_KIND_CONNECTED else window_us
        )
        for event in window.by_resource(key, EVENTS_PER_RESOURCE):
            if abs(event.occurred_us - info.occurred_us) > reach:
                continue
            entry = found.get(event.event_id)
            if entry is None:
                found[event.event_id] = entry = Candidate(event, bit)
                extra.append(entry)
            else:
                entry.found_by |= bit
    candidates = plan.candidates + extra if extra else plan.candidates
    return candidates, apart_from_all(answers)
