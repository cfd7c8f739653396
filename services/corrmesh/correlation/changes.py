"""What the engine changed since the last commit, kept for the store to write.

The consumer writes these, with the updates and the Ingest offset, in one
transaction; :meth:`ChangeLog.clear` starts afresh once that is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corrmesh.correlation.groups import Edge, GroupState
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2, event_pb2


@dataclass
class PendingAdd:
    """MEMBER_ADDED updates of one group in this batch, folded into one."""

    event_ids: list[str]
    members: list[EventInfo]
    edges: list[Edge]
    now: int
    trace: event_pb2.TraceContext | None


@dataclass
class ChangeLog:
    """Ids and objects touched since the last commit."""

    new_groups: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    rewritten: set[str] = field(default_factory=set)
    new_members: dict[str, EventInfo] = field(default_factory=dict)
    new_edges: list[tuple[EventInfo, Edge]] = field(default_factory=list)
    absorbed: dict[str, str] = field(default_factory=dict)
    new_links: list[tuple[str, str, int]] = field(default_factory=list)
    lone_new: dict[str, EventInfo] = field(default_factory=dict)
    lone_removed: set[str] = field(default_factory=set)
    #: Groups that left memory since the last commit (their last changes still count).
    retired: dict[str, GroupState] = field(default_factory=dict)
    updates: list[correlation_pb2.GroupUpdate] = field(default_factory=list)
    #: group id -> its coalesced MEMBER_ADDED, emitted at the end of the batch.
    pending: dict[str, PendingAdd] = field(default_factory=dict)
    horizon: int | None = None

    def absorb(self, base_id: str, other_id: str, persisted: bool) -> None:
        """Records that ``other_id`` was folded into ``base_id``."""
        self.new_groups.discard(other_id)
        self.dirty.discard(other_id)
        self.rewritten.discard(other_id)
        for old, into in self.absorbed.items():
            if into == other_id:
                self.absorbed[old] = base_id
        if persisted:
            self.absorbed[other_id] = base_id
        # Links made in this batch follow the group they name; none between the two.
        moved = [
            (base_id if a == other_id else a, base_id if b == other_id else b, kind)
            for a, b, kind in self.new_links
        ]
        self.new_links = list(dict.fromkeys((a, b, k) for a, b, k in moved if a != b))

    def joined(self, event: EventInfo, was_lone: bool) -> None:
        """``event`` joined a group; it may have been alone in the window before."""
        if was_lone and self.lone_new.pop(event.event_id, None) is None:
            self.lone_removed.add(event.event_id)
        self.new_members[event.event_id] = event
