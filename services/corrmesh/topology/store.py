"""Durable state of Topology: declared dependencies and the change log.

Synchronous SQLAlchemy; the server calls it through ``asyncio.to_thread``.
A :class:`StoreWrite` is applied in one transaction, so the declared
dependencies and the changes announcing them commit together.

Change-log sequences are given here, head + 1 onwards in one multi-row
INSERT (one writer appends, under the writer's lock; a second one would
collide on the primary key and fail rather than interleave). The log is
trimmed from its oldest end (:meth:`TopologyStore.trim`) but its newest
change is always kept, so the head never moves back; a reader resuming from
a trimmed sequence gets :class:`ChangesTrimmedError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Engine, Table, delete, func, insert, select, text
from sqlalchemy.orm import Session

from corrmesh.runtime.db import create_db_engine, migrate, session_factory
from corrmesh.topology.models import ChangeLogEntry, DeclaredDependency, DeclaredResource
from corrmesh.v1 import event_pb2, topology_pb2

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_topology"


#: Core inserts of the change log skip the ORM's per-row bookkeeping.
CHANGES_TABLE = cast(Table, ChangeLogEntry.__table__)


class ChangesTrimmedError(Exception):
    """Changes after ``after`` were trimmed away: the oldest kept is ``oldest``."""

    def __init__(self, after: int, oldest: int) -> None:
        super().__init__(f"changes after {after} were trimmed; the oldest kept is {oldest}")
        self.after = after
        self.oldest = oldest


@dataclass(frozen=True)
class StoredResource:
    key: str
    ref: event_pb2.ResourceRef
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredDependency:
    dependent_key: str
    dependency_key: str
    description: str


@dataclass
class StoreWrite:
    """What one graph mutation persists; keys are :func:`keys.key_to_text` strings."""

    #: Declared resources to add (kept as they are when present).
    resources: list[StoredResource] = field(default_factory=list)
    #: Dependencies to add, or whose description to update.
    dependencies: list[StoredDependency] = field(default_factory=list)
    #: (dependent_key, dependency_key) to remove; declared resources no
    #: dependency names any more are removed with them.
    removed_dependencies: list[tuple[str, str]] = field(default_factory=list)
    #: Appended to the change log in order; their sequences are assigned here.
    changes: list[topology_pb2.TopologyChange] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """Everything the graph is rebuilt from at start."""

    resources: list[StoredResource]
    dependencies: list[StoredDependency]
    head: int


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TopologyStore:
    """Declared dependencies and the change log in one database."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_db_engine(url)
        self._sessions = session_factory(self.engine)

    def migrate(self) -> None:
        migrate(self.engine, MIGRATIONS_DIR, VERSION_TABLE)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """True when the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("select 1"))
        return True

    def snapshot(self) -> Snapshot:
        with self._sessions() as session:
            rows = session.scalars(select(DeclaredResource).order_by(DeclaredResource.id)).all()
            resources = [_stored_resource(row) for row in rows]
            key_by_id = {row.id: row.resource_key for row in rows}
            dependencies = [
                StoredDependency(
                    key_by_id[dep.dependent_id], key_by_id[dep.dependency_id], dep.description
                )
                for dep in session.scalars(
                    select(DeclaredDependency).order_by(DeclaredDependency.id)
                )
            ]
            head = session.scalar(select(func.max(ChangeLogEntry.sequence))) or 0
        return Snapshot(resources, dependencies, head)

    def apply(self, write: StoreWrite) -> list[int]:
        """Commits ``write``; returns the sequences given to its changes, in order."""
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            ids = self._resource_ids(session, write, now)
            for dep in write.dependencies:
                self._upsert_dependency(session, ids, dep, now)
            for dependent_key, dependency_key in write.removed_dependencies:
                if dependent_key not in ids or dependency_key not in ids:
                    continue  # not a declared dependency: nothing stored
                session.execute(
                    delete(DeclaredDependency).where(
                        DeclaredDependency.dependent_id == ids[dependent_key],
                        DeclaredDependency.dependency_id == ids[dependency_key],
                    )
                )
                self._prune(session, [ids[dependent_key], ids[dependency_key]])
            if not write.changes:
                return []
            head = session.scalar(select(func.max(ChangeLogEntry.sequence))) or 0
            # A watch burst logs thousands at once, mostly at one moment.
            moments: dict[tuple[int, int], datetime] = {}
            rows = []
            for sequence, change in enumerate(write.changes, head + 1):
                stamp = change.changed_at
                moment = moments.get((stamp.seconds, stamp.nanos))
                if moment is None:
                    moment = moments[(stamp.seconds, stamp.nanos)] = stamp.ToDatetime(tzinfo=UTC)
                rows.append(
                    {
                        "sequence": sequence,
                        "type": change.type,
                        "cluster": change.cluster,
                        "changed_at": moment,
                        "change": change.SerializeToString(),
                    }
                )
            session.execute(insert(CHANGES_TABLE), rows)
            return list(range(head + 1, head + 1 + len(rows)))

    def _resource_ids(self, session: Session, write: StoreWrite, now: datetime) -> dict[str, int]:
        wanted = {r.key for r in write.resources}
        wanted.update(
            k for dep in write.dependencies for k in (dep.dependent_key, dep.dependency_key)
        )
        wanted.update(k for pair in write.removed_dependencies for k in pair)
        ids: dict[str, int] = {}
        if wanted:
            rows = session.execute(
                select(DeclaredResource.resource_key, DeclaredResource.id).where(
                    DeclaredResource.resource_key.in_(wanted)
                )
            )
            ids = {key: row_id for key, row_id in rows}
        for resource in write.resources:
            if resource.key in ids:
                continue
            ref = resource.ref
            row = DeclaredResource(
                resource_key=resource.key,
                cluster=ref.cluster,
                kind=ref.kind,
                namespace=ref.namespace,
                name=ref.name,
                uid=ref.uid,
                api_version=ref.api_version,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            ids[resource.key] = row.id
        return ids

    def _prune(self, session: Session, resource_ids: list[int]) -> None:
        """Deletes declared resources no dependency names any more."""
        referenced = set(
            session.scalars(
                select(DeclaredDependency.dependent_id).where(
                    DeclaredDependency.dependent_id.in_(resource_ids)
                )
            )
        ) | set(
            session.scalars(
                select(DeclaredDependency.dependency_id).where(
                    DeclaredDependency.dependency_id.in_(resource_ids)
                )
            )
        )
        unreferenced = [i for i in resource_ids if i not in referenced]
        if unreferenced:
            session.execute(delete(DeclaredResource).where(DeclaredResource.id.in_(unreferenced)))

    def _upsert_dependency(
        self, session: Session, ids: dict[str, int], dep: StoredDependency, now: datetime
    ) -> None:
        dependent_id, dependency_id = ids[dep.dependent_key], ids[dep.dependency_key]
        row = session.scalar(
            select(DeclaredDependency).where(
                DeclaredDependency.dependent_id == dependent_id,
                DeclaredDependency.dependency_id == dependency_id,
            )
        )
        if row is None:
            session.add(
                DeclaredDependency(
                    dependent_id=dependent_id,
                    dependency_id=dependency_id,
                    description=dep.description,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif row.description != dep.description:
            row.description = dep.description
            row.updated_at = now

    def read_changes_after(self, after: int, limit: int) -> list[topology_pb2.TopologyChange]:
        """Up to ``limit`` changes with sequence > ``after``, oldest first.

        Raises ChangesTrimmedError when ``after`` (> 0) is older than what the
        log keeps: the changes right after it are gone. 0 reads from the oldest kept.
        """
        with self._sessions() as session:
            rows = session.execute(
                select(ChangeLogEntry.sequence, ChangeLogEntry.change)
                .where(ChangeLogEntry.sequence > after)
                .order_by(ChangeLogEntry.sequence)
                .limit(limit)
            ).all()
            if after > 0 and rows and rows[0][0] > after + 1:
                # A gap after ``after``: trimmed, unless older changes are kept.
                oldest = session.scalar(select(func.min(ChangeLogEntry.sequence))) or 0
                if after < oldest - 1:
                    raise ChangesTrimmedError(after, oldest)
        changes = []
        for sequence, payload in rows:
            change = topology_pb2.TopologyChange.FromString(payload)
            change.sequence = sequence
            changes.append(change)
        return changes

    def trim(self, max_count: int, older_than: datetime | None, limit: int = 50_000) -> int:
        """Deletes the oldest changes beyond the newest ``max_count`` (0: no count
        bound) and those changed before ``older_than`` (None: no age bound), at
        most ``limit`` per call; the newest change always stays. Returns how many."""
        with self._sessions.begin() as session:
            head = session.scalar(select(func.max(ChangeLogEntry.sequence))) or 0
            oldest = session.scalar(select(func.min(ChangeLogEntry.sequence))) or 0
            cut = head - max_count if max_count > 0 else 0
            if older_than is not None:
                aged = session.scalar(
                    select(func.max(ChangeLogEntry.sequence)).where(
                        ChangeLogEntry.changed_at < older_than
                    )
                )
                cut = max(cut, aged or 0)
            cut = min(cut, head - 1, oldest + limit - 1)
            if cut < oldest:
                return 0
            result = session.execute(delete(ChangeLogEntry).where(ChangeLogEntry.sequence <= cut))
            return int(getattr(result, "rowcount", 0) or 0)


def _stored_resource(row: DeclaredResource) -> StoredResource:
    ref = event_pb2.ResourceRef(
        cluster=row.cluster,
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        uid=row.uid,
        api_version=row.api_version,
    )
    return StoredResource(row.resource_key, ref, _aware(row.created_at), _aware(row.updated_at))
