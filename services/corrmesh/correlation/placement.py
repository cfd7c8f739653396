"""Placing a scored event: join a group, merge groups, open one, or continue one.

The engine scores an event against its candidates; this part decides what the
scores mean for the groups: the event joins the largest open group it
matched (folding in the other matched groups above ``merge_threshold``), opens
a group with the lone events it matched, continues a group that reached
``max_group_size`` in a new linked one, or opens a recurrence of a resolved
group it matches.

Two rules keep incidents that overlap in time and resources apart, which
pairwise scores alone cannot (an incident's events are dense while it lasts;
the next one on the same services starts after a pause or while this one
is still going):

- ``quiet_after``: a group with no new event for that long of event time,
  and no alert still firing in it, takes only repeats of a series it holds
  (:attr:`EventInfo.repeats`, a Kubernetes Event counted again) and events
  of a flow it holds (one correlation id); other matches with it are set
  aside, and the event joins or opens another group.
  A firing alert says its problem is ongoing however long the next alert
  takes (rules wait their ``for:`` before firing), and so does an open
  condition (:mod:`corrmesh.correlation.conditions`: a Pod still Pending).
- ``merge_within``: matched groups merge only when their first events lie
  that close together, the fragments of one onset; an event matching two
  established groups joins the larger and leaves the other as it is.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

from corrmesh.correlation.changes import ChangeLog
from corrmesh.correlation.config import duration_us
from corrmesh.correlation.groups import Edge, GroupState
from corrmesh.correlation.lifecycle import OPEN_FOR_JOINING
from corrmesh.correlation.strategies import Match
from corrmesh.correlation.window import EventInfo, EventWindow
from corrmesh.v1 import correlation_pb2, event_pb2
from corrmesh.v1.correlation_pb2 import (
    GROUP_STATUS_BUILDING,
    GROUP_TYPE_ASSOCIATION,
    GROUP_TYPE_INCIDENT,
    GROUP_TYPE_MULTI_CAMERA,
    GROUP_UPDATE_TYPE_CREATED,
    GROUP_UPDATE_TYPE_MEMBER_ADDED,
    GROUP_UPDATE_TYPE_MERGED,
    RELATIONSHIP_TYPE_CONTINUATION,
    RELATIONSHIP_TYPE_RECURRENCE,
)

MAX_EDGES_PER_EVENT = 8
#: What a group gathers, by the domain of its first event.
_GROUP_TYPES: dict[int, int] = {
    event_pb2.DOMAIN_CAMERA: GROUP_TYPE_MULTI_CAMERA,
    event_pb2.DOMAIN_DICOM: GROUP_TYPE_ASSOCIATION,
}


class PlacementMixin:
    """The engine's group-making part (mixed into CorrelationEngine)."""

    config: correlation_pb2.CorrelationConfig
    groups: dict[str, GroupState]
    headers: dict[str, GroupState]
    window: EventWindow
    log: ChangeLog
    next_sequence: int
    groups_created: int
    matches: Counter[str]
    resolved_fingerprints: dict[str, str]
    _persisted: set[str]
    _clock: Callable[[], int]

    # Provided by the lifecycle part.
    changed: Callable[..., None]
    link: Callable[[str, GroupState, int], None]
    move_links: Callable[[GroupState, GroupState], None]
    # Provided by the open-conditions part.
    move_conditions: Callable[[str, str], None]

    def configure_placement(self, config: correlation_pb2.CorrelationConfig) -> None:
        """Reads the placement rules of ``config`` (see the module docstring)."""
        self._quiet_us = duration_us(config.quiet_after)
        self._merge_within_us = duration_us(config.merge_within)

    def _quiet_for(self, info: EventInfo, candidate: EventInfo, group: GroupState) -> bool:
        """True when ``group`` is quiet and ``info`` does not carry on from
        ``candidate``: no repeat of its series, not its flow (one correlation
        id: a DICOM association pausing between series), and no resolution
        (an alert's end reaches its group however late)."""
        return (
            0 < self._quiet_us < info.occurred_us - group.last_us
            and not group.firing
            and not info.resolves
            and not (info.repeats and info.fingerprint == candidate.fingerprint)
            and info.correlation_id != candidate.correlation_id
            and info.continues != group.group_id
        )

    def _place(self, info: EventInfo, matches: list[tuple[EventInfo, Match]]) -> None:
        if not matches and not (
            info.fingerprint in self.resolved_fingerprints and not info.resolves
        ):
            return
        max_size = self.config.max_group_size
        open_best: dict[str, float] = {}
        closed_best: dict[str, float] = {}
        loners: list[EventInfo] = []
        for candidate, match in matches:
            group_id = candidate.group_id
            if group_id is None:
                loners.append(candidate)
            elif self.groups[group_id].status in OPEN_FOR_JOINING or info.resolves:
                if not self._quiet_for(info, candidate, self.groups[group_id]):
                    open_best.setdefault(group_id, match.score)
            else:  # a closed group: matching it makes a recurrence, quiet or not
                closed_best.setdefault(group_id, match.score)
        ranked = sorted(
            open_best,
            key=lambda g: (-self.groups[g].member_count, self.groups[g].created_sequence),
        )
        base_id = next((g for g in ranked if self.groups[g].member_count < max_size), None)
        now = self._clock()
        if base_id is None:
            self._open_group(info, loners, ranked, closed_best, matches, now)
            return
        group = self.groups[base_id]
        merged: list[str] = []
        size = group.member_count + 1
        if self.config.auto_merge_groups:
            for other_id in ranked:
                other = self.groups[other_id]
                if (
                    other_id != base_id
                    and open_best[other_id] >= self.config.merge_threshold
                    and size + other.member_count <= max_size
                    and self._onsets_close(group, other)
                ):
                    merged.append(other_id)
                    size += other.member_count
                    self.absorb(group, other)
        joined = [info, *loners[: max(0, max_size - size)]]
        for event in joined:
            self.join(group, event)
        kind = GROUP_UPDATE_TYPE_MERGED if merged else GROUP_UPDATE_TYPE_MEMBER_ADDED
        edges = self._connect(group, info, matches, now)
        delta = None if merged else (joined, edges)
        self.changed(group, kind, [info.event_id], now, delta, merged, cause=info)

    def _onsets_close(self, group: GroupState, other: GroupState) -> bool:
        return not self._merge_within_us or (
            abs(group.first_us - other.first_us) <= self._merge_within_us
        )

    def _open_group(
        self,
        info: EventInfo,
        loners: list[EventInfo],
        full: list[str],
        closed: dict[str, float],
        matches: list[tuple[EventInfo, Match]],
        now: int,
    ) -> None:
        """A new group: from lone matches, as the continuation of a full group, or as
        the recurrence of a resolved one. A resolving event never opens a group."""
        if info.resolves:
            return
        parent: tuple[str, int] | None = None
        if full:
            parent = (full[0], RELATIONSHIP_TYPE_CONTINUATION)
        elif closed:
            parent = (
                max(closed, key=closed.__getitem__),
                RELATIONSHIP_TYPE_RECURRENCE,
            )
        elif not loners and info.fingerprint in self.resolved_fingerprints:
            parent = (
                self.resolved_fingerprints[info.fingerprint],
                RELATIONSHIP_TYPE_RECURRENCE,
            )
        if parent is None and not loners:
            return
        max_size = self.config.max_group_size
        group = self.create(info, loners[: max(0, max_size - 1)], now)
        self._connect(group, info, matches, now)
        if parent is not None:
            self.link(parent[0], group, parent[1])
        created = GROUP_UPDATE_TYPE_CREATED
        self.changed(group, created, [info.event_id], now, cause=info, created=True)

    def _connect(
        self,
        group: GroupState,
        info: EventInfo,
        matches: list[tuple[EventInfo, Match]],
        now: int,
    ) -> list[Edge]:
        made: list[Edge] = []
        for candidate, match in matches:
            if candidate.group_id != group.group_id:
                continue
            edge = Edge(
                candidate.event_id, info.event_id, match.score, match.strategy, match.reason, now
            )
            group.add_edge(edge)
            self.log.new_edges.append((info, edge))
            self.matches[match.strategy] += 1
            made.append(edge)
            if len(made) >= MAX_EDGES_PER_EVENT:
                break
        return made

    def create(self, info: EventInfo, founders: list[EventInfo], now: int) -> GroupState:
        """A new group of ``founders`` and ``info``; its primary is the earliest."""
        members = [*founders, info]
        primary = min(members, key=lambda m: (m.occurred_us, m.sequence))
        group = GroupState(
            group_id=str(uuid.uuid4()),
            created_sequence=self.next_sequence,
            primary_event_id=primary.event_id,
            title="",
            domain=primary.domain,
            created_us=now,
            updated_us=now,
            status=GROUP_STATUS_BUILDING,
            type=_GROUP_TYPES.get(primary.domain, GROUP_TYPE_INCIDENT),
        )
        self.groups[group.group_id] = group
        self.log.new_groups.add(group.group_id)
        self.groups_created += 1
        for member in members:
            self.join(group, member)
        return group

    def join(self, group: GroupState, event: EventInfo) -> None:
        """Makes ``event`` a member of ``group`` (it may be a lone event of the window)."""
        was_lone = event.group_id is None and event.event_id in self.window.events
        if was_lone:
            group.in_window += 1
        self.log.joined(event, was_lone)
        group.add_member(event)

    def absorb(self, base: GroupState, other: GroupState) -> None:
        """Folds ``other`` into ``base`` (members, edges, links); ``other`` is gone."""
        for member in other.members.values():
            base.add_member(member)
        for edge in other.edges:
            base.add_edge(edge)
        self.move_links(base, other)
        self.move_conditions(base.group_id, other.group_id)
        base.in_window += other.in_window
        self.groups.pop(other.group_id, None)
        self.headers.pop(other.group_id, None)
        self.log.absorb(base.group_id, other.group_id, other.group_id in self._persisted)
