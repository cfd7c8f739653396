"""Events on resources Topology relates to nothing that is failing: joined by time.

Topology may know a resource yet relate it to none of the resources with recent
events: a database or cache in a topology built from traces (which never reach
them), a resource whose edges nobody declared. Then topology says nothing
either way, and such a resource failing while another group is in full burst is
far more often part of that incident than a new one (on the TVDiag sets, every
database and cache anomaly belongs to the case whose alerts surround it).

A resource counts as isolated when nothing in the graph links it to any of the
resources with recent events that Topology knows (UNRELATED at distance 0:
separate parts of the graph); a resource merely farther away than the engine asks
about is not (the first Pod of a new rollout during another incident, linked
to it through a Node: joining that incident would mix the two). An event on
an isolated resource is also matched, at :data:`COINCIDENCE_SCORE`, with the
newest event of the group that had the most events in the
:data:`COINCIDENCE_SECONDS` before it. A resource Topology does not know
(UNKNOWN) is never isolated: DICOM senders and cameras are not in the graph,
and their own strategies decide for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.lifecycle import OPEN_FOR_JOINING
from corrmesh.correlation.strategies import Match, Relation
from corrmesh.correlation.strategies.topology import NAME as TOPOLOGY
from corrmesh.correlation.window import EventInfo, EventWindow
from corrmesh.v1 import topology_pb2

COINCIDENCE_SECONDS = 10
COINCIDENCE_US = COINCIDENCE_SECONDS * 1_000_000
COINCIDENCE_SCORE = 0.6
#: Newest events of the window looked at: a burst, not the whole window.
SCANNED_EVENTS = 64


def apart_from_all(answers: Sequence[Relation | None]) -> bool:
    """True when Topology says of at least one neighbour that nothing links the
    two, and of none that something does (neighbours it does not know, or
    has not answered for, say nothing either way)."""
    apart = False
    for answer in answers:
        if answer is None or answer[0] == topology_pb2.RELATION_KIND_UNKNOWN:
            continue
        if answer != _APART:
            return False
        apart = True
    return apart


_APART: Relation = (topology_pb2.RELATION_KIND_UNRELATED, 0)


def coincident_match(
    info: EventInfo, window: EventWindow, groups: Mapping[str, GroupState]
) -> tuple[EventInfo, Match] | None:
    """``info`` matched with the busiest open group of the seconds before it, if any.

    O(:data:`SCANNED_EVENTS`): the newest arrivals of the window, most recent first.
    """
    counts: Counter[str] = Counter()
    newest: dict[str, EventInfo] = {}
    for scanned, event in enumerate(reversed(window.events.values())):
        if scanned >= SCANNED_EVENTS:
            break
        group_id = event.group_id
        if group_id is None or not 0 <= info.occurred_us - event.occurred_us <= COINCIDENCE_US:
            continue
        group = groups.get(group_id)
        if group is None or group.status not in OPEN_FOR_JOINING:
            continue
        counts[group_id] += 1
        newest.setdefault(group_id, event)
    if not counts:
        return None
    group_id, count = counts.most_common(1)[0]
    partner = newest[group_id]
    reason = (
        f"related to nothing failing per topology; {count} event(s) of this group in the "
        f"{COINCIDENCE_SECONDS} s before"
    )
    return partner, Match(COINCIDENCE_SCORE, TOPOLOGY, reason)
