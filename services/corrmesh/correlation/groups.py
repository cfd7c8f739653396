"""A correlation group in memory, and its protobuf form.

A group is fully in memory (members, edges) while some member is in the
window; after that only its header stays, as long as its lifecycle can still
change (until it is archived), so memory does not grow with history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from corrmesh.correlation.resources import describe
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2

#: Fingerprints a group remembers for recurrence after it is resolved.
MAX_REMEMBERED_FINGERPRINTS = 32
OPEN_STATUSES = frozenset(
    {correlation_pb2.GROUP_STATUS_BUILDING, correlation_pb2.GROUP_STATUS_ACTIVE}
)


@dataclass(slots=True)
class Edge:
    """Why ``to_event_id`` joined: its match with ``from_event_id``."""

    from_event_id: str
    to_event_id: str
    score: float
    strategy: str
    reason: str
    #: Wall-clock time it was made, microseconds since the epoch.
    detected_us: int


@dataclass(slots=True)
class GroupState:
    """Everything about one group the engine needs to place events and move its status."""

    group_id: str
    #: Sequence of the update that created it: the stable order of ListGroups.
    created_sequence: int
    primary_event_id: str
    title: str
    domain: int
    #: Wall-clock times, microseconds since the epoch.
    created_us: int
    updated_us: int
    status: int = correlation_pb2.GROUP_STATUS_ACTIVE
    type: int = correlation_pb2.GROUP_TYPE_INCIDENT
    severity: int = 0
    revision: int = 0
    members: dict[str, EventInfo] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    #: Members currently in the window; at 0 the engine keeps only the header.
    in_window: int = 0
    member_count: int = 0
    first_us: int = 0
    last_us: int = 0
    edge_score_sum: float = 0.0
    edge_count: int = 0
    #: Event time it was resolved at, when RESOLVED.
    resolved_us: int | None = None
    #: (other group id, RelationshipType): recurrence and continuation links.
    links: list[tuple[str, int]] = field(default_factory=list)
    #: Fingerprints (or resource keys) still firing; a resolving event removes its own.
    open_keys: set[str] = field(default_factory=set)
    #: Keys of alerts still firing: while any is, the group is never quiet.
    firing: set[str] = field(default_factory=set)
    fingerprints: list[str] = field(default_factory=list)
    resource_keys: set[str] = field(default_factory=set)
    #: event id -> the members it has edges with (correlated_event_ids).
    neighbours: dict[str, list[str]] = field(default_factory=dict)
    #: Operator notes and other annotations (Group.metadata).
    metadata: dict[str, str] = field(default_factory=dict)
    #: False when only the header is in memory.
    loaded: bool = True
    #: Root-cause candidates, pattern and impact (only those Group fields set).
    analysis: correlation_pb2.Group | None = None
    #: Cameras that have seen the pass a multi-camera group follows, and its
    #: newest sighting: the one a further camera's detection continues from.
    cameras: set[str] = field(default_factory=set)
    camera_head: EventInfo | None = None

    def count_member(self, event: EventInfo) -> None:
        """Counts ``event`` in: its time span, member count and severity (a group
        that does not hold its members, such as a DICOM rollup, stops here)."""
        if self.member_count == 0:
            self.first_us = self.last_us = event.occurred_us
        else:
            self.first_us = min(self.first_us, event.occurred_us)
            self.last_us = max(self.last_us, event.occurred_us)
        self.member_count += 1
        self.severity = max(self.severity, event.severity)

    def add_member(self, event: EventInfo) -> None:
        event.group_id = self.group_id
        if event.event_id in self.members:
            return
        self.members[event.event_id] = event
        self.count_member(event)
        key = event.fingerprint or event.resource_key or event.event_id
        if event.resolves:
            self.open_keys.discard(key)
            self.firing.discard(key)
        else:
            self.open_keys.add(key)
            if event.fires:
                self.firing.add(key)
            if (
                event.fingerprint
                and event.fingerprint not in self.fingerprints
                and len(self.fingerprints) < MAX_REMEMBERED_FINGERPRINTS
            ):
                self.fingerprints.append(event.fingerprint)
        if event.resource_key:
            self.resource_keys.add(event.resource_key)
        if event.camera_id:
            self.cameras.add(event.camera_id)
            head = self.camera_head
            if head is None or (event.occurred_us, event.sequence) > (
                head.occurred_us,
                head.sequence,
            ):
                self.camera_head = event

    def add_edge(self, edge: Edge) -> None:
        self.edges.append(edge)
        self.edge_score_sum += edge.score
        self.edge_count += 1
        self.neighbours.setdefault(edge.from_event_id, []).append(edge.to_event_id)
        self.neighbours.setdefault(edge.to_event_id, []).append(edge.from_event_id)

    def rebuild(self) -> None:
        """Recomputes every derived field from members and edges (after a split)."""
        members, edges = list(self.members.values()), list(self.edges)
        self.members, self.edges, self.neighbours = {}, [], {}
        self.member_count, self.severity, self.edge_score_sum, self.edge_count = 0, 0, 0.0, 0
        self.open_keys, self.fingerprints, self.resource_keys = set(), [], set()
        self.firing, self.cameras, self.camera_head = set(), set(), None
        for member in sorted(members, key=lambda m: m.sequence):
            self.add_member(member)
        for edge in edges:
            self.add_edge(edge)
        self.retitle()

    def retitle(self) -> None:
        primary = self.members.get(self.primary_event_id)
        if primary is not None:
            self.title = group_title(primary, len(self.resource_keys))

    @property
    def aggregate_score(self) -> float:
        """Mean score of the edges that joined the members (0 without edges)."""
        return self.edge_score_sum / self.edge_count if self.edge_count else 0.0

    def all_resolved(self) -> bool:
        return not self.open_keys


def group_title(primary: EventInfo, resources: int = 1) -> str:
    """The title of a group: its primary (first) event, where, and how wide."""
    if not primary.resource_key:
        return primary.title
    title = f"{primary.title} on {describe(primary.resource)}"
    if resources > 1:
        more = resources - 1
        title += f" and {more} more resource{'s' if more > 1 else ''}"
    return title


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


def set_time(target: timestamp_pb2.Timestamp, micros: int) -> None:
    """Sets ``target`` in place (cheaper than building and copying a Timestamp)."""
    target.seconds = micros // 1_000_000
    target.nanos = micros % 1_000_000 * 1000


def _member_template(member: EventInfo) -> correlation_pb2.GroupMember:
    """What a member's message always says; built once per event."""
    template = member.template
    if template is None:
        template = correlation_pb2.GroupMember(
            event_id=member.event_id,
            correlation_id=member.correlation_id,
            title=member.title,
            severity=member.severity,  # type: ignore[arg-type]
            resource=member.resource,
            sequence=member.sequence,
        )
        set_time(template.occurred_at, member.occurred_us)
        member.template = template
    return template


def fill_group(
    message: correlation_pb2.Group,
    group: GroupState,
    members: list[EventInfo] | None = None,
    edges: list[Edge] | None = None,
) -> correlation_pb2.Group:
    """Fills ``message`` with ``group`` and ``members``/``edges`` (default: all of them).

    Members come in event-time order, each with the ids it is correlated with.
    Sub-messages are filled in place: on the hot path every update goes
    through here, and copying built messages into repeated fields costs more
    than building them.
    """
    chosen = list(group.members.values()) if members is None else members
    chosen.sort(key=lambda m: (m.occurred_us, m.sequence))
    message.group_id = group.group_id
    message.title = group.title
    message.status = group.status  # type: ignore[assignment]
    message.type = group.type  # type: ignore[assignment]
    message.domain = group.domain  # type: ignore[assignment]
    message.severity = group.severity  # type: ignore[assignment]
    message.primary_event_id = group.primary_event_id
    message.aggregate_score = group.aggregate_score
    message.member_count = group.member_count
    message.revision = group.revision
    set_time(message.first_event_at, group.first_us)
    set_time(message.last_event_at, group.last_us)
    set_time(message.created_at, group.created_us)
    set_time(message.updated_at, group.updated_us)
    if group.resolved_us is not None:
        set_time(message.resolved_at, group.resolved_us)
    neighbours = group.neighbours
    for member in chosen:
        added = message.members.add()
        added.CopyFrom(_member_template(member))
        correlated = neighbours.get(member.event_id)
        if correlated:
            added.correlated_event_ids.extend(correlated)
    for edge in group.edges if edges is None else edges:
        out = message.edges.add()
        out.from_event_id = edge.from_event_id
        out.to_event_id = edge.to_event_id
        out.score = edge.score
        out.strategy = edge.strategy
        out.reason = edge.reason
        set_time(out.detected_at, edge.detected_us)
    for other, kind in group.links:
        link = message.links.add()
        link.group_id = other
        link.relationship_type = kind  # type: ignore[assignment]
    if group.metadata:
        message.metadata.update(group.metadata)
    if group.analysis is not None:
        message.MergeFrom(group.analysis)
    return message


def group_message(
    group: GroupState,
    members: list[EventInfo] | None = None,
    edges: list[Edge] | None = None,
) -> correlation_pb2.Group:
    """The Group message with ``members`` and ``edges`` (default: all of them)."""
    return fill_group(correlation_pb2.Group(), group, members, edges)
