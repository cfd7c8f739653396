"""Group lifecycle on event time, and the updates that announce every change.

BUILDING (fewer than ``min_events_to_activate`` members or an aggregate score
below ``min_score_to_activate``) → ACTIVE → STABLE (no new member for
``stabilize_after`` of event time) → RESOLVED (every fingerprint, or resource,
that fired in it has seen a resolving event, or an operator said so) →
ARCHIVED (``archive_after`` after it was resolved, or after its last event
when it only went stable). A new member wakes a STABLE group up again. An
event matching a RESOLVED or ARCHIVED group does not join it: it opens a new
group linked to the old one as a RECURRENCE; so does an unmatched event whose
fingerprint a resolved group remembers.

The watermark drives the clock: transitions fire when it passes their due
time, from a heap holding one entry per group (re-pushed lazily when the
group moved on meanwhile), so each costs O(log G) and nothing scans groups.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable

from corrmesh.correlation.changes import ChangeLog, PendingAdd
from corrmesh.correlation.config import duration_us
from corrmesh.correlation.groups import Edge, GroupState, fill_group, set_time
from corrmesh.correlation.window import EventInfo, EventWindow
from corrmesh.v1 import correlation_pb2, event_pb2
from corrmesh.v1.correlation_pb2 import (
    GROUP_STATUS_ACTIVE,
    GROUP_STATUS_ARCHIVED,
    GROUP_STATUS_BUILDING,
    GROUP_STATUS_RESOLVED,
    GROUP_STATUS_STABLE,
    GROUP_UPDATE_TYPE_MEMBER_ADDED,
    GROUP_UPDATE_TYPE_STATUS_CHANGED,
    RELATIONSHIP_TYPE_RECURRENCE,
)

#: A new event may join groups in these states.
OPEN_FOR_JOINING = frozenset(
    {
        GROUP_STATUS_BUILDING,
        GROUP_STATUS_ACTIVE,
        GROUP_STATUS_STABLE,
    }
)


class LifecycleMixin:
    """The lifecycle part of :class:`~corrmesh.correlation.engine.CorrelationEngine`."""

    config: correlation_pb2.CorrelationConfig
    groups: dict[str, GroupState]
    window: EventWindow
    log: ChangeLog
    newest_us: int | None
    next_sequence: int
    _window_us: int
    _lateness_us: int
    _clock: Callable[[], int]
    #: Trace context of the event being analysed, for the updates it causes.
    trace: Callable[[], event_pb2.TraceContext] | None = None
    # Provided by the open-conditions part: a group holding one stays loaded.
    holds_condition: Callable[[str], bool]
    expire_conditions: Callable[[int], None]

    def configure_lifecycle(self, config: correlation_pb2.CorrelationConfig) -> None:
        self._stabilize_us = duration_us(config.stabilize_after)
        self._archive_us = duration_us(config.archive_after)

    def reset_lifecycle(self) -> None:
        #: Groups whose lifecycle can still change but with no member in the window.
        self.headers: dict[str, GroupState] = {}
        #: Fingerprint -> the resolved group that remembers it (for recurrences).
        self.resolved_fingerprints: dict[str, str] = {}
        self._due: list[tuple[int, str]] = []

    @property
    def watermark_us(self) -> int | None:  # defined by the engine
        raise NotImplementedError

    # -- bookkeeping -------------------------------------------------------------------

    def track(self, group: GroupState) -> None:
        """Starts following ``group``'s lifecycle (after a restore or a change of state)."""
        if not group.loaded:
            self.headers[group.group_id] = group
        if group.status == GROUP_STATUS_RESOLVED:
            self._remember(group)
        due = self._due_at(group)
        if due is not None:
            heapq.heappush(self._due, (due, group.group_id))

    def settle(self, group: GroupState) -> None:
        """``group`` has no member left in the window: keep its header only."""
        self.groups.pop(group.group_id, None)
        self.log.retired[group.group_id] = group
        if group.status == GROUP_STATUS_ARCHIVED:
            return
        header = dataclasses.replace(
            group,
            members={},
            edges=[],
            neighbours={},
            open_keys=set(),
            cameras=set(),
            camera_head=None,
            loaded=False,
        )
        self.headers[group.group_id] = header

    def _remember(self, group: GroupState) -> None:
        for fingerprint in group.fingerprints:
            self.resolved_fingerprints[fingerprint] = group.group_id

    def _forget(self, group: GroupState) -> None:
        for fingerprint in group.fingerprints:
            if self.resolved_fingerprints.get(fingerprint) == group.group_id:
                del self.resolved_fingerprints[fingerprint]

    def _due_at(self, group: GroupState) -> int | None:
        if group.status in (
            GROUP_STATUS_BUILDING,
            GROUP_STATUS_ACTIVE,
        ):
            return group.last_us + self._stabilize_us
        if group.status == GROUP_STATUS_STABLE:
            return group.last_us + self._archive_us
        if group.status == GROUP_STATUS_RESOLVED and group.resolved_us is not None:
            return group.resolved_us + self._archive_us
        return None

    def find_group(self, group_id: str) -> GroupState | None:
        return self.groups.get(group_id) or self.headers.get(group_id)

    # -- changes -------------------------------------------------------------------------

    def activated(self, group: GroupState) -> bool:
        """Enough evidence to call it an incident."""
        return (
            group.member_count >= self.config.min_events_to_activate
            and group.aggregate_score >= self.config.min_score_to_activate
        )

    def changed(
        self,
        group: GroupState,
        kind: int,
        event_ids: list[str],
        now: int,
        delta: tuple[list[EventInfo], list[Edge]] | None = None,
        other_group_ids: list[str] | None = None,
        cause: EventInfo | None = None,
        created: bool = False,
    ) -> None:
        """Records a change of ``group`` caused by ``cause`` and announces it.

        ``delta`` is what the update carries (members and edges this change
        added); None carries the whole group.
        """
        group.revision += 1
        group.updated_us = now
        self.log.dirty.add(group.group_id)
        before = group.status
        if cause is not None:
            self._evaluate(group, cause)
        group.retitle()
        members, edges = (None, None) if delta is None else delta
        self.emit(kind, group, event_ids, now, members, edges, other_group_ids or [])
        if group.status != before and not created:
            self.emit(GROUP_UPDATE_TYPE_STATUS_CHANGED, group, event_ids, now, [], [], [])
        if group.status != before or created:
            self.track(group)

    def _evaluate(self, group: GroupState, cause: EventInfo) -> None:
        if cause.resolves:
            if group.all_resolved() and group.status in OPEN_FOR_JOINING:
                self.set_resolved(group, cause.occurred_us)
            return
        if group.status in (
            GROUP_STATUS_BUILDING,
            GROUP_STATUS_STABLE,
        ):
            group.status = GROUP_STATUS_ACTIVE if self.activated(group) else GROUP_STATUS_BUILDING

    def set_resolved(self, group: GroupState, at_us: int) -> None:
        group.status = GROUP_STATUS_RESOLVED
        group.resolved_us = at_us
        self._remember(group)

    def emit(
        self,
        kind: int,
        group: GroupState,
        event_ids: list[str],
        now: int,
        members: list[EventInfo] | None,
        edges: list[Edge] | None,
        other_group_ids: list[str],
    ) -> None:
        """Announces a change of ``group``; its sequence is the next in order.

        MEMBER_ADDED updates of one group are folded together until the end of
        the batch (:meth:`flush_updates`) or the group's next other update, so
        a storm of a thousand events in one group is a few updates, not a
        thousand; their ``event_ids`` list every event that joined.
        """
        pending = self.log.pending.pop(group.group_id, None)
        if kind == GROUP_UPDATE_TYPE_MEMBER_ADDED and members is not None and edges is not None:
            if pending is None:
                trace = self.trace() if self.trace is not None else None
                pending = PendingAdd([], [], [], now, trace)
            pending.event_ids += event_ids
            pending.members += members
            pending.edges += edges
            self.log.pending[group.group_id] = pending
            return
        if pending is not None:
            self._append(GROUP_UPDATE_TYPE_MEMBER_ADDED, group, pending, [])
        trace = self.trace() if self.trace is not None else None
        fresh = PendingAdd(event_ids, members, edges, now, trace)  # type: ignore[arg-type]
        self._append(kind, group, fresh, other_group_ids, full=members is None)

    def _append(
        self,
        kind: int,
        group: GroupState,
        what: PendingAdd,
        other_group_ids: list[str],
        full: bool = False,
    ) -> None:
        update = correlation_pb2.GroupUpdate(
            sequence=self.next_sequence,
            type=kind,  # type: ignore[arg-type]
            event_ids=what.event_ids,
            other_group_ids=other_group_ids,
        )
        fill_group(
            update.group, group, None if full else what.members, None if full else what.edges
        )
        set_time(update.emitted_at, what.now)
        if what.trace is not None:
            update.trace_context.CopyFrom(what.trace)
        self.next_sequence += 1
        self.log.updates.append(update)

    def flush_updates(self) -> None:
        """Emits the folded MEMBER_ADDED updates (end of a batch)."""
        pending, self.log.pending = self.log.pending, {}
        for group_id, what in pending.items():
            group = self.find_group(group_id) or self.log.retired.get(group_id)
            if group is not None:
                self._append(GROUP_UPDATE_TYPE_MEMBER_ADDED, group, what, [])

    def link(self, parent_id: str, child: GroupState, kind: int) -> None:
        """Links ``child`` to ``parent_id`` both ways (continuation, recurrence)."""
        child.links.append((parent_id, kind))
        self.log.new_links.append((child.group_id, parent_id, kind))
        parent = self.find_group(parent_id)
        if parent is None:
            return
        parent.links.append((child.group_id, kind))
        self.log.new_links.append((parent_id, child.group_id, kind))
        parent.revision += 1
        self.log.dirty.add(parent_id)
        if kind == RELATIONSHIP_TYPE_RECURRENCE:
            self._forget(parent)

    def move_links(self, base: GroupState, other: GroupState) -> None:
        """``other``'s links become ``base``'s; links between the two disappear."""
        gone, kept = other.group_id, base.group_id
        base.links = [link for link in base.links if link[0] != gone]
        known = {link[0] for link in base.links}
        for linked_id, kind in other.links:
            if linked_id == kept:
                continue
            if linked_id not in known:
                base.links.append((linked_id, kind))
                known.add(linked_id)
            linked = self.find_group(linked_id)
            if linked is not None:
                already = any(link[0] == kept for link in linked.links)
                linked.links = [
                    (kept, k) if g == gone else (g, k)
                    for g, k in linked.links
                    if not (g == gone and already)
                ]

    # -- the clock ----------------------------------------------------------------------

    def advance(self, event_us: int) -> None:
        """Moves event time to ``event_us``: due transitions fire, old events leave."""
        if self.newest_us is None or event_us > self.newest_us:
            self.newest_us = event_us
        watermark = self.watermark_us
        if watermark is None:
            return
        self._run_due(watermark)
        horizon = watermark - self._window_us
        self.log.horizon = horizon
        for event in self.window.evict_before(horizon):
            if event.group_id is None:
                self.log.lone_new.pop(event.event_id, None)
                continue
            group = self.groups.get(event.group_id)
            if group is None:
                continue
            group.in_window -= 1
            if group.in_window <= 0 and not self.holds_condition(group.group_id):
                self.settle(group)
        self.expire_conditions(watermark)

    def _run_due(self, watermark: int) -> None:
        while self._due and self._due[0][0] <= watermark:
            _, group_id = heapq.heappop(self._due)
            group = self.find_group(group_id)
            if group is None:
                continue
            due = self._due_at(group)
            if due is None:
                continue
            if due > watermark:
                heapq.heappush(self._due, (due, group_id))
                continue
            self._transition(group)

    def _transition(self, group: GroupState) -> None:
        if group.status in (
            GROUP_STATUS_BUILDING,
            GROUP_STATUS_ACTIVE,
        ):
            group.status = GROUP_STATUS_STABLE
        else:
            group.status = GROUP_STATUS_ARCHIVED
            self._forget(group)
        now = self._clock()
        group.revision += 1
        group.updated_us = now
        self.log.dirty.add(group.group_id)
        self.emit(GROUP_UPDATE_TYPE_STATUS_CHANGED, group, [], now, [], [], [])
        if group.status == GROUP_STATUS_ARCHIVED:
            if self.headers.pop(group.group_id, None) is not None:
                self.log.retired[group.group_id] = group
        else:
            self.track(group)
