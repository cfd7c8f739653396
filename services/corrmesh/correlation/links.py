"""Parent/child links between correlation ids: storage, validation, traversal.

A link says that the work behind one correlation id started or belongs to the
work behind another: a DICOM association SPAWNED one correlation id per
study, a BATCH job owns its items, a group that reached ``max_group_size``
has a CONTINUATION, a resolved incident a RECURRENCE. Ids are free-form
(edge correlation ids or group ids); nothing requires them to be known.

Rules:

* A link is identified by (parent, child, type). Storing it again changes
  nothing: the first write wins, including its metadata and ``created_at``,
  and the stored link is what the caller gets back.
* The links form a directed acyclic graph across all types: a link whose
  parent is already reachable from its child (following parent→child links)
  is rejected, because in a cycle "parent" would no longer mean anything.
  :func:`link_correlations` checks this under a writer lock (an in-process
  lock plus, on PostgreSQL, a transaction-scoped advisory lock), so two
  concurrent requests cannot close a cycle between them.
  :func:`add_links` (the engine's RECURRENCE/CONTINUATION links, always to a
  group id created in the same transaction) does not check.
* :func:`list_related` walks the links as an undirected graph, breadth first:
  depth 1 holds the direct parents and children, depth 2 what those are
  linked to (grandparents, siblings, grandchildren, other parents of a
  child), and so on. Each id appears once, at its smallest depth, with the id
  it was reached from and whether it is a parent of that id. Only links of
  the requested types are followed. Each level costs one indexed query per
  500 ids of the frontier; the walk stops at ``max_depth`` or
  :data:`MAX_RELATED` ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, UniqueConstraint, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from corrmesh.correlation.models import Base, BigId
from corrmesh.correlation.rows import chunks
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2

#: Most links one LinkCorrelations call may store.
MAX_LINKS_PER_CALL = 1000
#: Longest correlation id accepted (as Ingest accepts for an event's id).
MAX_ID_CHARS = 128
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
#: ListRelated's depth when the request leaves max_depth at 0, and its ceiling.
DEFAULT_MAX_DEPTH = 10
MAX_DEPTH = 100
#: Most ids one ListRelated answer holds; the walk stops there.
MAX_RELATED = 10_000

#: (parent, child, relationship type, metadata), as :func:`add_links` takes them.
LinkSpec = tuple[str, str, int, Mapping[str, str]]
_Key = tuple[str, str, int]

#: One advisory lock per schema, as Ingest's log does for its writers.
_ADVISORY_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.correlation_links'))"
)
#: Serialises this process's cycle checks with its writes (SQLite has one writer process).
_WRITE_LOCK = threading.Lock()


class CorrelationLinkRow(Base):
    __tablename__ = "correlation_links"
    __table_args__ = (
        UniqueConstraint("parent_correlation_id", "child_correlation_id", "relationship_type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    parent_correlation_id: Mapped[str] = mapped_column(String)
    child_correlation_id: Mapped[str] = mapped_column(String, index=True)
    relationship_type: Mapped[int] = mapped_column(Integer)
    #: The caller's string map ("metadata" is taken by the declarative base).
    details: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LinkCycleError(Exception):
    """``index`` (in the request) names the first link that would close a cycle."""

    def __init__(self, index: int) -> None:
        super().__init__(f"link {index} would make a cycle")
        self.index = index


@dataclass(frozen=True, slots=True)
class RelatedQuery:
    """A validated ListRelated request."""

    correlation_id: str
    max_depth: int
    #: Empty follows every type.
    types: frozenset[int] = field(default_factory=frozenset)


def _known_type(value: int) -> bool:
    return value != 0 and value in correlation_pb2.RelationshipType.values()


def _check_id(value: str, path: str, violations: FieldViolations) -> None:
    if not value:
        violations.add(path, "is required")
    elif len(value) > MAX_ID_CHARS:
        violations.add(path, f"must be at most {MAX_ID_CHARS} characters")


def validate_links(
    links: Sequence[correlation_pb2.CorrelationLink], violations: FieldViolations
) -> list[LinkSpec]:
    """The links of a LinkCorrelations request; each bad field becomes a violation."""
    if not links:
        violations.add("links", "at least one link is required")
    if len(links) > MAX_LINKS_PER_CALL:
        violations.add("links", f"at most {MAX_LINKS_PER_CALL} links per call; split the request")
        return []
    specs: list[LinkSpec] = []
    for index, link in enumerate(links):
        path = f"links[{index}]"
        _check_id(link.parent_correlation_id, f"{path}.parent_correlation_id", violations)
        _check_id(link.child_correlation_id, f"{path}.child_correlation_id", violations)
        if link.parent_correlation_id and link.parent_correlation_id == link.child_correlation_id:
            violations.add(f"{path}.child_correlation_id", "must differ from the parent")
        if not _known_type(link.relationship_type):
            violations.add(f"{path}.relationship_type", "must be a known RelationshipType")
        if len(link.metadata) > MAX_METADATA_ENTRIES:
            violations.add(f"{path}.metadata", f"at most {MAX_METADATA_ENTRIES} entries")
        for key, value in link.metadata.items():
            if not key or len(key) > MAX_METADATA_KEY_CHARS:
                violations.add(
                    f"{path}.metadata", f"keys must have 1 to {MAX_METADATA_KEY_CHARS} characters"
                )
            if len(value) > MAX_METADATA_VALUE_CHARS:
                violations.add(
                    f"{path}.metadata[{key}]", f"must be at most {MAX_METADATA_VALUE_CHARS} chars"
                )
        specs.append(
            (
                link.parent_correlation_id,
                link.child_correlation_id,
                link.relationship_type,
                dict(link.metadata),
            )
        )
    return specs


def validate_related(
    request: correlation_pb2.ListRelatedRequest, violations: FieldViolations
) -> RelatedQuery:
    """The walk a ListRelated request asks for; without ``transitive`` the depth is 1."""
    _check_id(request.correlation_id, "correlation_id", violations)
    if request.max_depth < 0:
        violations.add("max_depth", "must not be negative")
    elif request.max_depth > MAX_DEPTH:
        violations.add("max_depth", f"must be at most {MAX_DEPTH}")
    for index, value in enumerate(request.relationship_types):
        if not _known_type(value):
            violations.add(f"relationship_types[{index}]", "must be a known RelationshipType")
    depth = 1
    if request.transitive:
        depth = request.max_depth or DEFAULT_MAX_DEPTH
    return RelatedQuery(request.correlation_id, depth, frozenset(request.relationship_types))


# -- writing -------------------------------------------------------------------------


def _insert_ignoring_duplicates(session: Session) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on the link key, in the session's dialect."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(CorrelationLinkRow).on_conflict_do_nothing(
        index_elements=["parent_correlation_id", "child_correlation_id", "relationship_type"]
    )


def add_links(session: Session, links: Sequence[LinkSpec], now: datetime | None = None) -> None:
    """Stores ``links`` inside the caller's transaction; links already stored are kept as they are.

    No validation and no cycle check: the caller (the engine linking a new
    group to an older one) guarantees both ids are set and the child is new.
    """
    if not links:
        return
    created_at = now or datetime.now(UTC)
    rows = [
        {
            "parent_correlation_id": parent,
            "child_correlation_id": child,
            "relationship_type": type_,
            "details": dict(metadata),
            "created_at": created_at,
        }
        for parent, child, type_, metadata in links
    ]
    session.execute(_insert_ignoring_duplicates(session), rows)


def _stored(session: Session, keys: Iterable[_Key]) -> dict[_Key, CorrelationLinkRow]:
    wanted = set(keys)
    parents = sorted({parent for parent, _child, _type in wanted})
    found: dict[_Key, CorrelationLinkRow] = {}
    for part in chunks(parents):
        for row in session.scalars(
            select(CorrelationLinkRow).where(CorrelationLinkRow.parent_correlation_id.in_(part))
        ):
            key = (row.parent_correlation_id, row.child_correlation_id, row.relationship_type)
            if key in wanted:
                found[key] = row
    return found


def _children(session: Session, ids: Sequence[str]) -> dict[str, set[str]]:
    """Stored children of each of ``ids`` (every type)."""
    out: dict[str, set[str]] = {}
    for part in chunks(ids):
        rows = session.execute(
            select(
                CorrelationLinkRow.parent_correlation_id, CorrelationLinkRow.child_correlation_id
            ).where(CorrelationLinkRow.parent_correlation_id.in_(part))
        )
        for parent, child in rows:
            out.setdefault(parent, set()).add(child)
    return out


def _reaches(session: Session, start: str, target: str, pending: Mapping[str, set[str]]) -> bool:
    """True when ``target`` is a descendant of ``start`` (stored or pending links)."""
    seen = {start}
    frontier = [start]
    while frontier:
        stored = _children(session, frontier)
        following: list[str] = []
        for node in frontier:
            for child in stored.get(node, set()) | pending.get(node, set()):
                if child == target:
                    return True
                if child not in seen:
                    seen.add(child)
                    following.append(child)
        frontier = following
    return False


def _first_cycle(session: Session, new: Sequence[tuple[int, LinkSpec]]) -> int | None:
    """The request index of the first new link whose parent its child already reaches."""
    pending: dict[str, set[str]] = {}
    # Only a child that has children of its own can lead back to a parent.
    with_children = set(_children(session, sorted({spec[1] for _i, spec in new})))
    for index, (parent, child, _type, _metadata) in new:
        if (child in with_children or child in pending) and _reaches(
            session, child, parent, pending
        ):
            return index
        pending.setdefault(parent, set()).add(child)
    return None


def _message(row: CorrelationLinkRow) -> correlation_pb2.CorrelationLink:
    link = correlation_pb2.CorrelationLink(
        parent_correlation_id=row.parent_correlation_id,
        child_correlation_id=row.child_correlation_id,
        relationship_type=row.relationship_type,  # type: ignore[arg-type]
        metadata=row.details,
    )
    created = row.created_at
    link.created_at.FromDatetime(created if created.tzinfo else created.replace(tzinfo=UTC))
    return link


def link_correlations(
    sessions: sessionmaker[Session], links: Sequence[LinkSpec]
) -> list[correlation_pb2.CorrelationLink]:
    """Stores ``links`` (validated) atomically; the stored link for each, in order.

    Raises :class:`LinkCycleError` (and stores nothing) when a link would
    close a cycle. Blocking: call through ``asyncio.to_thread``.
    """
    keys = [(parent, child, type_) for parent, child, type_, _metadata in links]
    with _WRITE_LOCK, sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_ADVISORY_LOCK)
        existing = _stored(session, keys)
        new: list[tuple[int, LinkSpec]] = []
        seen: set[_Key] = set(existing)
        for index, (key, spec) in enumerate(zip(keys, links, strict=True)):
            if key not in seen:
                seen.add(key)
                new.append((index, spec))
        cycle = _first_cycle(session, new)
        if cycle is not None:
            raise LinkCycleError(cycle)
        add_links(session, [spec for _index, spec in new])
        stored = _stored(session, keys)
        return [_message(stored[key]) for key in keys]


# -- reading -------------------------------------------------------------------------


def _neighbours(
    session: Session, frontier: Sequence[str], types: frozenset[int]
) -> list[tuple[str, str, int]]:
    """(parent, child, type) of every link touching ``frontier``, of ``types`` if any."""
    found: list[tuple[str, str, int]] = []
    link = CorrelationLinkRow
    for part in chunks(frontier):
        query = select(
            link.parent_correlation_id, link.child_correlation_id, link.relationship_type
        ).where(or_(link.parent_correlation_id.in_(part), link.child_correlation_id.in_(part)))
        if types:
            query = query.where(link.relationship_type.in_(sorted(types)))
        found.extend((p, c, t) for p, c, t in session.execute(query))
    return found


def list_related(
    sessions: sessionmaker[Session], query: RelatedQuery
) -> list[correlation_pb2.RelatedCorrelation]:
    """Ids linked to ``query.correlation_id``, breadth first, ordered by depth then id.

    An id reachable several ways at the same depth is reported once, reached
    from the smallest ``via`` id (then the smallest type, parents first), so
    answers are deterministic. Blocking: call through ``asyncio.to_thread``.
    """
    origin = query.correlation_id
    seen = {origin}
    related: list[correlation_pb2.RelatedCorrelation] = []
    frontier = [origin]
    with sessions() as session:
        for depth in range(1, query.max_depth + 1):
            if not frontier or len(related) >= MAX_RELATED:
                break
            members = set(frontier)
            # id -> (via, type, not is_parent): the smallest tuple wins.
            reached: dict[str, tuple[str, int, bool]] = {}
            for parent, child, type_ in _neighbours(session, frontier, query.types):
                for node, via, is_parent in ((parent, child, True), (child, parent, False)):
                    if via in members and node not in seen:
                        option = (via, type_, not is_parent)
                        if node not in reached or option < reached[node]:
                            reached[node] = option
            frontier = sorted(reached)[: MAX_RELATED - len(related)]
            seen.update(frontier)
            related.extend(
                correlation_pb2.RelatedCorrelation(
                    correlation_id=node,
                    relationship_type=reached[node][1],  # type: ignore[arg-type]
                    depth=depth,
                    via_correlation_id=reached[node][0],
                    is_parent=not reached[node][2],
                )
                for node in frontier
            )
    return related
