"""Conversions between the engine's objects and table rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from corrmesh.correlation.groups import Edge, GroupState, datetime_us, micros_of
from corrmesh.correlation.models import EdgeRow, EventColumns, GroupMemberRow, GroupRow
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2

#: Ids per ``IN (...)`` list: well under every backend's parameter limit.
CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def event_values(event: EventInfo) -> dict[str, Any]:
    """Column values of an event row (member or lone)."""
    return {
        "event_id": event.event_id,
        "sequence": event.sequence,
        "correlation_id": event.correlation_id,
        "occurred_at": datetime_us(event.occurred_us),
        "domain": event.domain,
        "source": event.source,
        "fingerprint": event.fingerprint,
        "resource_key": event.resource_key,
        "title": event.title,
        "severity": event.severity,
        "resource": event.resource.SerializeToString(),
    }


def event_of(row: EventColumns, group_id: str | None = None) -> EventInfo:
    return EventInfo(
        event_id=row.event_id,
        sequence=row.sequence,
        occurred_us=micros_of(row.occurred_at),
        correlation_id=row.correlation_id,
        domain=row.domain,
        source=row.source,
        fingerprint=row.fingerprint,
        resource_key=row.resource_key,
        resource=event_pb2.ResourceRef.FromString(row.resource),
        title=row.title,
        severity=row.severity,
        group_id=group_id,
    )


def group_values(group: GroupState) -> dict[str, Any]:
    first_us, last_us = group.first_last_us()
    return {
        "group_id": group.group_id,
        "created_sequence": group.created_sequence,
        "title": group.title,
        "status": group.status,
        "type": group.type,
        "domain": group.domain,
        "severity": group.severity,
        "primary_event_id": group.primary_event_id,
        "member_count": len(group.members),
        "aggregate_score": group.aggregate_score,
        "first_event_at": datetime_us(first_us),
        "last_event_at": datetime_us(last_us),
        "created_at": group.created_at,
        "updated_at": group.updated_at,
        "revision": group.revision,
    }


def edge_values(group_id: str, edge: Edge) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "from_event_id": edge.from_event_id,
        "to_event_id": edge.to_event_id,
        "score": edge.score,
        "strategy": edge.strategy,
        "reason": edge.reason,
        "detected_at": edge.detected_at,
    }


def load_groups(session: Session, group_ids: Iterable[str]) -> list[GroupState]:
    """Full groups (members and edges) for ``group_ids``, in creation order."""
    ids = list(dict.fromkeys(group_ids))
    groups: dict[str, GroupState] = {}
    for part in chunks(ids):
        for row in session.scalars(select(GroupRow).where(GroupRow.group_id.in_(part))):
            groups[row.group_id] = GroupState(
                group_id=row.group_id,
                created_sequence=row.created_sequence,
                primary_event_id=row.primary_event_id,
                title=row.title,
                domain=row.domain,
                created_at=datetime_us(micros_of(row.created_at)),
                updated_at=datetime_us(micros_of(row.updated_at)),
                status=row.status,
                type=row.type,
                severity=row.severity,
                revision=row.revision,
            )
        members = select(GroupMemberRow).where(GroupMemberRow.group_id.in_(part))
        for member in session.scalars(members.order_by(GroupMemberRow.sequence)):
            groups[member.group_id].members[member.event_id] = event_of(member, member.group_id)
        edges = select(EdgeRow).where(EdgeRow.group_id.in_(part)).order_by(EdgeRow.id)
        for e in session.scalars(edges):
            groups[e.group_id].edges.append(
                Edge(
                    e.from_event_id,
                    e.to_event_id,
                    e.score,
                    e.strategy,
                    e.reason,
                    datetime_us(micros_of(e.detected_at)),
                )
            )
    return sorted(groups.values(), key=lambda g: g.created_sequence)
