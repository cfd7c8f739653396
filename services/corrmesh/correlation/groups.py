"""A correlation group in memory, and its protobuf form."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from corrmesh.correlation.resources import describe
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2


@dataclass(slots=True)
class Edge:
    """Why ``to_event_id`` joined: its match with ``from_event_id``."""

    from_event_id: str
    to_event_id: str
    score: float
    strategy: str
    reason: str
    detected_at: datetime


@dataclass(slots=True)
class GroupState:
    """Everything about one group; the engine keeps groups with members in the window."""

    group_id: str
    #: Sequence of the update that created it: the stable order of ListGroups.
    created_sequence: int
    primary_event_id: str
    title: str
    domain: int
    created_at: datetime
    updated_at: datetime
    status: int = correlation_pb2.GROUP_STATUS_ACTIVE
    type: int = correlation_pb2.GROUP_TYPE_INCIDENT
    severity: int = 0
    revision: int = 0
    members: dict[str, EventInfo] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    #: Members currently in the window; at 0 the engine lets the group go.
    in_window: int = 0

    def add_member(self, event: EventInfo) -> None:
        event.group_id = self.group_id
        self.members[event.event_id] = event
        self.severity = max(self.severity, event.severity)

    @property
    def aggregate_score(self) -> float:
        if not self.edges:
            return 0.0
        return sum(e.score for e in self.edges) / len(self.edges)

    def first_last_us(self) -> tuple[int, int]:
        times = [m.occurred_us for m in self.members.values()]
        return min(times), max(times)


def group_title(primary: EventInfo) -> str:
    """The title of a group, from its primary (first) event."""
    if primary.resource_key:
        return f"{primary.title} on {describe(primary.resource)}"
    return primary.title


def timestamp_us(micros: int) -> timestamp_pb2.Timestamp:
    seconds, rest = divmod(micros, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def datetime_us(micros: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime (exact)."""
    seconds, rest = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


def micros_of(moment: datetime) -> int:
    """The inverse of :func:`datetime_us`; naive values (SQLite) are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp_of(moment: datetime) -> timestamp_pb2.Timestamp:
    return timestamp_us(micros_of(moment))


def group_message(group: GroupState) -> correlation_pb2.Group:
    """The Group message: members in event-time order, each with its correlated ids."""
    neighbours: dict[str, list[str]] = {}
    edges = []
    for edge in group.edges:
        neighbours.setdefault(edge.from_event_id, []).append(edge.to_event_id)
        neighbours.setdefault(edge.to_event_id, []).append(edge.from_event_id)
        edges.append(
            correlation_pb2.CorrelationEdge(
                from_event_id=edge.from_event_id,
                to_event_id=edge.to_event_id,
                score=edge.score,
                strategy=edge.strategy,
                reason=edge.reason,
                detected_at=timestamp_of(edge.detected_at),
            )
        )
    ordered = sorted(group.members.values(), key=lambda m: (m.occurred_us, m.sequence))
    members = [
        correlation_pb2.GroupMember(
            event_id=m.event_id,
            correlation_id=m.correlation_id,
            occurred_at=timestamp_us(m.occurred_us),
            title=m.title,
            severity=m.severity,  # type: ignore[arg-type]
            resource=m.resource,
            correlated_event_ids=neighbours.get(m.event_id, []),
            sequence=m.sequence,
        )
        for m in ordered
    ]
    first_us, last_us = group.first_last_us()
    return correlation_pb2.Group(
        group_id=group.group_id,
        title=group.title,
        status=group.status,  # type: ignore[arg-type]
        type=group.type,  # type: ignore[arg-type]
        domain=group.domain,  # type: ignore[arg-type]
        severity=group.severity,  # type: ignore[arg-type]
        primary_event_id=group.primary_event_id,
        members=members,
        edges=edges,
        aggregate_score=group.aggregate_score,
        member_count=len(group.members),
        first_event_at=timestamp_us(first_us),
        last_event_at=timestamp_us(last_us),
        created_at=timestamp_of(group.created_at),
        updated_at=timestamp_of(group.updated_at),
        revision=group.revision,
    )
