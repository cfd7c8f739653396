"""Open conditions: a Kubernetes object's problem that lasts until the cluster says it ended.

Some problems Kubernetes reports once and then only repeats: a Pod the
scheduler cannot place stays Pending (FailedScheduling) until it is
Scheduled or deleted; a volume that will not attach or mount; a
PersistentVolumeClaim waiting for its volume (ExternalProvisioning,
ProvisioningFailed) until ProvisioningSucceeded; a Node down (NodeNotReady)
until NodeReady. The event recorder sends a repeat at most every few
minutes and counts the rest, so such an incident outlives the window: a
scale-out beyond capacity can leave Pods Pending for an hour, with a repeat
every half hour and the scale-down at the end, each far from the last.

So the group that holds an object's opening event (:data:`OPENS`) holds the
condition, and the object's later events join that group, however quiet the
group has gone. The group keeps its members in memory meanwhile (it is not
settled to a header while it holds a condition).

A condition ends with one of :data:`ENDS` on the object (that event still
joins), when an opening event of the object opens it in another group, or
when nothing about the object was heard for :data:`HORIZON_US` of event
time. Only the Kubernetes domain has them.

After a restart, :meth:`OpenConditionsMixin.rebuild_conditions` replays the
members of the groups the store reloaded for them (those with an opening
member inside the horizon), in sequence order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.lifecycle import OPEN_FOR_JOINING
from corrmesh.correlation.resources import describe
from corrmesh.correlation.strategies import Match
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2

#: The strategy name on the edges a condition makes.
CONDITION = "open_condition"
#: Event reasons (``type``) that open a condition on their object, and that end it.
OPENS = frozenset(
    {
        "FailedScheduling",  # a Pod stays Pending
        "FailedAttachVolume",  # its volume is not attached
        "FailedMount",  # nor mounted
        "ExternalProvisioning",  # a PersistentVolumeClaim waits for its volume
        "ProvisioningFailed",
        "NodeNotReady",  # a Node is down
    }
)
ENDS = frozenset(
    {
        "Scheduled",
        "SuccessfulAttachVolume",
        "Started",  # its containers run: scheduled, attached and mounted
        "Killing",  # the Pod is deleted
        "ProvisioningSucceeded",
        "NodeReady",
    }
)
#: A condition nothing was heard of for this long of event time has ended.
HORIZON_US = 3600 * 1_000_000


@dataclass(slots=True)
class _Condition:
    group_id: str
    #: The newest event of the object in the group: the edge's other end.
    anchor: EventInfo
    since_us: int
    last_us: int
    #: The reason that opened it.
    opened_by: str


class OpenConditionsMixin:
    """Objects whose problem a group holds open (mixed into CorrelationEngine)."""

    groups: dict[str, GroupState]
    settle: Callable[[GroupState], None]

    def reset_conditions(self) -> None:
        """Forgets every condition."""
        self._conditions: dict[str, _Condition] = {}
        self._held: Counter[str] = Counter()
        self._condition_due: list[tuple[int, str]] = []

    def holds_condition(self, group_id: str) -> bool:
        """True while ``group_id`` holds an open condition (it stays loaded)."""
        return self._held[group_id] > 0

    def follow_condition(
        self, info: EventInfo, matches: list[tuple[EventInfo, Match]]
    ) -> list[tuple[EventInfo, Match]]:
        """``matches`` narrowed to the group of the open condition ``info`` carries
        on, with a match for it: the object's condition decides where it goes."""
        continued = self.condition_match(info)
        if continued is None:
            return matches
        anchor = continued[0]
        info.continues = group_id = str(anchor.group_id)
        kept = [m for m in matches if m[0].group_id == group_id]
        if all(m[0] is not anchor for m in kept):
            kept.insert(0, continued)
        return kept

    def move_conditions(self, base_id: str, other_id: str) -> None:
        """The conditions of group ``other_id`` now belong to ``base_id`` (merged into it)."""
        moved = self._held.pop(other_id, 0)
        if not moved:
            return
        for condition in self._conditions.values():
            if condition.group_id == other_id:
                condition.group_id = base_id
        self._held[base_id] += moved

    def condition_match(self, info: EventInfo) -> tuple[EventInfo, Match] | None:
        """The open condition ``info`` carries on, as a match with its group's anchor."""
        if info.domain != event_pb2.DOMAIN_KUBERNETES or not info.resource_key:
            return None
        condition = self._conditions.get(info.resource_key)
        if condition is None or info.occurred_us - condition.last_us > HORIZON_US:
            return None
        group = self.groups.get(condition.group_id)
        if group is None or group.status not in OPEN_FOR_JOINING:
            return None
        minutes = max(0, info.occurred_us - condition.since_us) // 60_000_000
        reason = (
            f"{describe(info.resource)} has had {condition.opened_by} since {minutes} min "
            "before, still open in this group"
        )
        return condition.anchor, Match(1.0, CONDITION, reason)

    def observe_condition(self, info: EventInfo) -> None:
        """Opens, carries on or ends the condition of ``info``'s object, once placed."""
        if info.domain != event_pb2.DOMAIN_KUBERNETES or not info.resource_key:
            return
        key = info.resource_key
        condition = self._conditions.get(key)
        if info.type in ENDS:
            if condition is not None:
                self._end(key)
            return
        if info.group_id is None:
            return
        if condition is not None and condition.group_id == info.group_id:
            condition.anchor, condition.last_us = info, max(condition.last_us, info.occurred_us)
        elif info.type in OPENS:
            if condition is not None:
                self._end(key)
            self._conditions[key] = _Condition(
                info.group_id, info, info.occurred_us, info.occurred_us, info.type
            )
            self._held[info.group_id] += 1
        else:
            return
        heapq.heappush(self._condition_due, (info.occurred_us + HORIZON_US, key))

    def expire_conditions(self, watermark_us: int) -> None:
        """Ends the conditions nothing was heard of for the horizon."""
        due = self._condition_due
        while due and due[0][0] <= watermark_us:
            _, key = heapq.heappop(due)
            condition = self._conditions.get(key)
            if condition is not None and condition.last_us + HORIZON_US <= watermark_us:
                self._end(key)

    def rebuild_conditions(
        self, members: Iterable[EventInfo], lateness_us: int, watermark_us: int | None
    ) -> None:
        """The conditions as they stood at ``watermark_us`` after ``members``
        (replayed in sequence order, each moving the watermark as it did)."""
        self.reset_conditions()
        newest: int | None = None
        for member in sorted(members, key=lambda m: m.sequence):
            newest = member.occurred_us if newest is None else max(newest, member.occurred_us)
            self.observe_condition(member)
            self.expire_conditions(newest - lateness_us)
        if watermark_us is not None:
            self.expire_conditions(watermark_us)

    def _end(self, key: str) -> None:
        condition = self._conditions.pop(key)
        group_id = condition.group_id
        self._held[group_id] -= 1
        if self._held[group_id] > 0:
            return
        del self._held[group_id]
        group = self.groups.get(group_id)
        if group is not None and group.in_window <= 0:
            self.settle(group)
