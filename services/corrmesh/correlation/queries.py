"""Reads behind the RPCs: groups, the update log and counters (blocking; use to_thread).

They read only committed state, so an answer never shows a group the engine
has formed but not yet made durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from corrmesh.correlation.dicom import store as dicom_store
from corrmesh.correlation.dicom.keys import ROLLUP_TYPES
from corrmesh.correlation.groups import GroupState, group_message
from corrmesh.correlation.models import (
    ConsumerOffsetRow,
    EdgeRow,
    GroupMemberRow,
    GroupRow,
    GroupUpdateRow,
)
from corrmesh.correlation.rows import load_groups
from corrmesh.correlation.store import CONSUMER
from corrmesh.runtime.streams import Batch
from corrmesh.v1 import correlation_pb2


@dataclass(frozen=True)
class GroupFilter:
    """Empty lists match everything; ``min_severity`` 0 too."""

    statuses: frozenset[int] = frozenset()
    domains: frozenset[int] = frozenset()
    min_severity: int = 0
    types: frozenset[int] = frozenset()

    def matches(self, status: int, domain: int, severity: int, type_: int | None = None) -> bool:
        return (
            (not self.statuses or status in self.statuses)
            and (not self.domains or domain in self.domains)
            and severity >= self.min_severity
            and (type_ is None or not self.types or type_ in self.types)
        )


@dataclass
class Counters:
    """Committed figures for GetStats."""

    consumer_sequence: int = 0
    events_in: int = 0
    groups_created: int = 0
    groups: int = 0
    active_groups: int = 0
    grouped_events: int = 0
    matches: dict[str, int] = field(default_factory=dict)


def noise_reduction(counters: Counters) -> float:
    """1 - (groups + lone events) / events in: the share of items nobody must read."""
    if not counters.events_in:
        return 0.0
    shown = counters.groups + (counters.events_in - counters.grouped_events)
    return max(0.0, 1.0 - shown / counters.events_in)


def _full_groups(session: Session, group_ids: list[str]) -> list[GroupState]:
    """Groups with their members: a derived group's listed from its own table."""
    groups = load_groups(session, group_ids)
    dicom_store.attach_members(session, [g for g in groups if g.type in ROLLUP_TYPES])
    return groups


class GroupQueries:
    """Read-only access to committed groups and updates."""

    def __init__(self, sessions: sessionmaker) -> None:  # type: ignore[type-arg]
        self.sessions = sessions

    def get_group(self, group_id: str) -> correlation_pb2.Group | None:
        with self.sessions() as session:
            found = _full_groups(session, [group_id])
            return group_message(found[0]) if found else None

    def group_for_event(self, event_id: str) -> correlation_pb2.Group | None:
        with self.sessions() as session:
            group_id = session.scalar(
                select(GroupMemberRow.group_id).where(GroupMemberRow.event_id == event_id)
            )
            if group_id is None:
                return None
            found = load_groups(session, [group_id])
            return group_message(found[0]) if found else None

    def list_groups(
        self, wanted: GroupFilter, after: int, limit: int
    ) -> tuple[list[correlation_pb2.Group], int | None]:
        """Groups created after ``after`` (a created_sequence), oldest first.

        Returns the page and the position to continue from, or None on the last page.
        """
        query = select(GroupRow.group_id, GroupRow.created_sequence).where(
            GroupRow.created_sequence > after
        )
        if wanted.statuses:
            query = query.where(GroupRow.status.in_(wanted.statuses))
        if wanted.domains:
            query = query.where(GroupRow.domain.in_(wanted.domains))
        if wanted.types:
            query = query.where(GroupRow.type.in_(wanted.types))
        if wanted.min_severity:
            query = query.where(GroupRow.severity >= wanted.min_severity)
        query = query.order_by(GroupRow.created_sequence).limit(limit + 1)
        with self.sessions() as session:
            rows = session.execute(query).all()
            page = rows[:limit]
            groups = [group_message(g) for g in _full_groups(session, [r[0] for r in page])]
        more = len(rows) > limit
        return groups, (page[-1][1] if more and page else None)

    def read_updates(
        self, after: int, limit: int, wanted: GroupFilter
    ) -> Batch[correlation_pb2.GroupUpdate]:
        """Updates after ``after`` that match; ``through`` is the last one looked at."""
        query = (
            select(
                GroupUpdateRow.sequence,
                GroupUpdateRow.status,
                GroupUpdateRow.domain,
                GroupUpdateRow.severity,
                GroupUpdateRow.payload,
            )
            .where(GroupUpdateRow.sequence > after)
            .order_by(GroupUpdateRow.sequence)
            .limit(limit)
        )
        with self.sessions() as session:
            rows = session.execute(query).all()
        items = [
            correlation_pb2.GroupUpdate.FromString(payload)
            for _seq, status, domain, severity, payload in rows
            if wanted.matches(status, domain, severity)
        ]
        return Batch(items, rows[-1][0] if rows else after)

    def head_sequence(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.max(GroupUpdateRow.sequence))) or 0

    def counters(self, counted: bool = True) -> Counters:
        """The figures kept with the consumer offset, and with ``counted`` those
        counted from the stored groups, members and edges (which take time in
        proportion to the store: tens of milliseconds at 40,000 members)."""
        with self.sessions() as session:
            offset = session.get(ConsumerOffsetRow, CONSUMER)
            found = Counters()
            if offset is not None:
                found.consumer_sequence = offset.sequence
                found.events_in = offset.events_in
                found.groups_created = offset.groups_created
            if not counted:
                return found
            # Derived groups list events already grouped: not more to read.
            found.groups = (
                session.scalar(
                    select(func.count())
                    .select_from(GroupRow)
                    .where(GroupRow.type.not_in(sorted(ROLLUP_TYPES)))
                )
                or 0
            )
            found.active_groups = (
                session.scalar(
                    select(func.count())
                    .select_from(GroupRow)
                    .where(GroupRow.status == correlation_pb2.GROUP_STATUS_ACTIVE)
                )
                or 0
            )
            found.grouped_events = (
                session.scalar(select(func.count()).select_from(GroupMemberRow)) or 0
            )
            found.matches = {
                strategy: count
                for strategy, count in session.execute(
                    select(EdgeRow.strategy, func.count()).group_by(EdgeRow.strategy)
                ).all()
            }
            return found
