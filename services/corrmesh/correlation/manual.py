"""What operators do to groups by hand: correlate, merge, split, resolve.

Each edit runs on the engine between two batches of the stream (the consumer
holds its lock) and is committed like a batch, so the update log and the
tables stay one consistent story. Groups that are no longer in memory are
loaded from the store first (:meth:`ManualEditsMixin.adopt`) and go back to
being headers afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from corrmesh.correlation.changes import ChangeLog
from corrmesh.correlation.groups import Edge, GroupState
from corrmesh.correlation.window import EventInfo, EventWindow
from corrmesh.v1.correlation_pb2 import (
    GROUP_STATUS_ACTIVE,
    GROUP_STATUS_ARCHIVED,
    GROUP_STATUS_BUILDING,
    GROUP_STATUS_RESOLVED,
    GROUP_UPDATE_TYPE_CREATED,
    GROUP_UPDATE_TYPE_MEMBER_ADDED,
    GROUP_UPDATE_TYPE_MERGED,
    GROUP_UPDATE_TYPE_SPLIT,
    GROUP_UPDATE_TYPE_STATUS_CHANGED,
)

MANUAL = "manual"


class ManualEditsMixin:
    """The manual part of :class:`~corrmesh.correlation.engine.CorrelationEngine`."""

    groups: dict[str, GroupState]
    headers: dict[str, GroupState]
    window: EventWindow
    log: ChangeLog
    newest_us: int | None
    groups_created: int
    next_sequence: int
    _clock: Callable[[], int]

    # Provided by the engine and its lifecycle part.
    create: Callable[[EventInfo, list[EventInfo], int], GroupState]
    join: Callable[[GroupState, EventInfo], None]
    absorb: Callable[[GroupState, GroupState], None]
    changed: Callable[..., None]
    emit: Callable[..., None]
    settle: Callable[[GroupState], None]
    track: Callable[[GroupState], None]
    activated: Callable[[GroupState], bool]
    set_resolved: Callable[[GroupState, int], None]

    def adopt(self, loaded: Sequence[GroupState]) -> None:
        """Brings groups read from the store into memory (members and edges)."""
        for group in loaded:
            if group.group_id in self.groups:
                continue
            self.headers.pop(group.group_id, None)
            group.loaded = True
            group.in_window = sum(1 for m in group.members if m in self.window.events)
            self.groups[group.group_id] = group

    def release(self) -> None:
        """Groups with no member in the window go back to headers after an edit."""
        for group in list(self.groups.values()):
            if group.in_window <= 0:
                self.settle(group)

    def _manual_edge(self, group: GroupState, to: EventInfo, reason: str, now: int) -> None:
        if to.event_id == group.primary_event_id:
            return
        edge = Edge(group.primary_event_id, to.event_id, 1.0, MANUAL, reason, now)
        group.add_edge(edge)
        self.log.new_edges.append((to, edge))

    def correlate(
        self, events: Sequence[EventInfo], target: GroupState | None, reason: str
    ) -> GroupState:
        """Puts ``events`` in one group: ``target``, else the largest of their groups,
        else a new one. Events already in other groups bring those groups along
        (it is a merge); SplitGroup takes a member out first if that is not wanted."""
        now = self._clock()
        why = f"correlated by hand: {reason}" if reason else "correlated by hand"
        owning = {e.group_id: self.groups[e.group_id] for e in events if e.group_id}
        if target is None and owning:
            target = max(owning.values(), key=lambda g: (g.member_count, -g.created_sequence))
        loners = [e for e in events if e.group_id is None]
        ids = [e.event_id for e in events]
        if target is None:
            group = self.create(loners[-1], loners[:-1], now)
            for event in loners:
                self._manual_edge(group, event, why, now)
            if group.status == GROUP_STATUS_BUILDING:
                group.status = GROUP_STATUS_ACTIVE
            self.changed(group, GROUP_UPDATE_TYPE_CREATED, ids, now, created=True)
            return group
        merged = [g.group_id for g in owning.values() if g.group_id != target.group_id]
        for other_id in merged:
            other = self.groups[other_id]
            other_primary = other.members.get(other.primary_event_id)
            self.absorb(target, other)
            if other_primary is not None:
                self._manual_edge(target, other_primary, why, now)
        for event in loners:
            self.join(target, event)
            self._manual_edge(target, event, why, now)
        if target.status == GROUP_STATUS_BUILDING:
            target.status = GROUP_STATUS_ACTIVE
        kind = GROUP_UPDATE_TYPE_MERGED if merged else GROUP_UPDATE_TYPE_MEMBER_ADDED
        self.changed(target, kind, ids, now, None, merged)
        return target

    def merge(self, groups: Sequence[GroupState]) -> GroupState:
        """Folds ``groups`` into the largest of them (the oldest on a tie)."""
        now = self._clock()
        base = max(groups, key=lambda g: (g.member_count, -g.created_sequence))
        merged: list[str] = []
        for other in groups:
            if other.group_id == base.group_id:
                continue
            other_primary = other.members.get(other.primary_event_id)
            self.absorb(base, other)
            merged.append(other.group_id)
            if other_primary is not None:
                self._manual_edge(base, other_primary, "merged by hand", now)
        self.changed(base, GROUP_UPDATE_TYPE_MERGED, [], now, None, merged)
        return base

    def split(self, group: GroupState, event_ids: Sequence[str]) -> GroupState:
        """Moves ``event_ids`` out of ``group`` into a new group; edges across are dropped."""
        now = self._clock()
        moving = set(event_ids)
        moved = [group.members.pop(i) for i in event_ids]
        edges = group.edges
        group.edges = [
            e for e in edges if e.from_event_id not in moving and e.to_event_id not in moving
        ]
        primary = min(moved, key=lambda m: (m.occurred_us, m.sequence))
        new = GroupState(
            group_id=str(uuid.uuid4()),
            created_sequence=self.next_sequence + 1,
            primary_event_id=primary.event_id,
            title="",
            domain=primary.domain,
            created_us=now,
            updated_us=now,
            status=group.status,
            type=group.type,
            members={m.event_id: m for m in moved},
            edges=[e for e in edges if e.from_event_id in moving and e.to_event_id in moving],
        )
        for m in moved:
            m.group_id = new.group_id
        if group.primary_event_id in moving:
            group.primary_event_id = min(
                group.members.values(), key=lambda m: (m.occurred_us, m.sequence)
            ).event_id
        for part in (group, new):
            part.rebuild()
            part.in_window = sum(1 for m in part.members if m in self.window.events)
            if part.status in (
                GROUP_STATUS_BUILDING,
                GROUP_STATUS_ACTIVE,
            ):
                part.status = GROUP_STATUS_ACTIVE if self.activated(part) else GROUP_STATUS_BUILDING
            part.revision += 1
            part.updated_us = now
            self.log.rewritten.add(part.group_id)
            self.log.dirty.add(part.group_id)
        self.groups[new.group_id] = new
        self.log.new_groups.add(new.group_id)
        self.groups_created += 1
        self.emit(
            GROUP_UPDATE_TYPE_SPLIT,
            group,
            list(event_ids),
            now,
            None,
            None,
            [new.group_id],
        )
        self.emit(
            GROUP_UPDATE_TYPE_CREATED,
            new,
            list(event_ids),
            now,
            None,
            None,
            [group.group_id],
        )
        self.track(group)
        self.track(new)
        return new

    def resolve(self, group: GroupState, note: str) -> GroupState:
        """An operator resolves ``group`` at the current event time."""
        if group.status in (
            GROUP_STATUS_RESOLVED,
            GROUP_STATUS_ARCHIVED,
        ):
            return group
        now = self._clock()
        self.set_resolved(group, max(self.newest_us or 0, group.last_us))
        if note:
            group.metadata["resolution_note"] = note
        group.revision += 1
        group.updated_us = now
        self.log.dirty.add(group.group_id)
        self.emit(GROUP_UPDATE_TYPE_STATUS_CHANGED, group, [], now, [], [], [])
        self.track(group)
        return group
