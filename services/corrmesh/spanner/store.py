"""Spanner's persistent configuration: nodes, configurations, source mappings
and the query log, over SQLAlchemy (SQLite or PostgreSQL).

Every method is blocking; the servicer calls them through ``asyncio.to_thread``.
Methods take and return protobuf messages; failures are the exceptions below,
which the servicer turns into gRPC statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from corrmesh.runtime.db import create_db_engine, migrate, session_factory
from corrmesh.spanner import convert, models
from corrmesh.v1 import spanner_pb2

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_spanner"

T = TypeVar("T")

#: A source of a configuration: its mapping and the node it maps.
MappedNode = tuple[spanner_pb2.SourceMapping, spanner_pb2.DicomNode]

_INSERT_QUERY_LOG = insert(models.Base.metadata.tables[models.QueryLog.__tablename__])

#: Where a listing resumes: (create_time or started_at, id) of the last row returned.
Position = tuple[datetime, str]


class StoreError(Exception):
    """Base of the store's failures."""


@dataclass
class NotFoundError(StoreError):
    resource_type: str
    resource_id: str


@dataclass
class AlreadyExistsError(StoreError):
    resource_type: str
    message: str


@dataclass
class InUseError(StoreError):
    """A resource others depend on cannot be removed (FAILED_PRECONDITION)."""

    resource_type: str
    resource_id: str
    used_by: list[str] = field(default_factory=list)


@dataclass
class InvalidError(StoreError):
    """An update produced an invalid resource; ``violations`` are (field, description)."""

    violations: list[tuple[str, str]]


class SpannerStore:
    """The configuration database of one Spanner process."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        #: Counts committed changes to configurations, nodes and mappings in this
        #: process, so a reader can tell its cached copy is still current.
        self.generation = 0

    def open(self) -> None:
        """Connects and migrates to the newest schema."""
        engine = create_db_engine(self.database_url)
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)
        self._engine = engine
        self._sessions = session_factory(engine)
        event.listen(self._sessions, "after_flush", _note_configuration_change)
        event.listen(self._sessions, "after_commit", self._count_configuration_change)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._sessions = None

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        with self._session() as session:
            return session.execute(text("select 1")).scalar_one() == 1

    def _count_configuration_change(self, session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            self.generation += 1

    def _connection(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction that commits when the block ends."""
        if self._engine is None:
            raise RuntimeError("SpannerStore used before open()")
        return self._engine.begin()

    def _session(self) -> Session:
        if self._sessions is None:
            raise RuntimeError("SpannerStore used before open()")
        return self._sessions()

    # Spanner configurations.

    def create_config(self, config: spanner_pb2.SpannerConfig) -> spanner_pb2.SpannerConfig:
        """Inserts a validated configuration; its name must be unused."""
        row = models.SpannerConfig(id=models.new_id())
        convert.config_into_row(config, row)
        row.create_time = row.update_time = models.utc_now()
        with self._session() as session:
            self._check_config_name_free(session, config.name, exclude_id=None)
            session.add(row)
            self._commit_unique(session, "SpannerConfig", "name")
            return convert.config_to_proto(row)

    def get_config(self, config_id: str) -> spanner_pb2.SpannerConfig:
        with self._session() as session:
            return convert.config_to_proto(self._config_row(session, config_id))

    def list_configs(
        self, after: Position | None, limit: int
    ) -> tuple[list[spanner_pb2.SpannerConfig], Position | None]:
        """A page in creation order and where the next one starts (None at the end)."""
        rows, position = self._page(models.SpannerConfig, after, limit)
        return [convert.config_to_proto(r) for r in rows], position

    def update_config(
        self,
        config_id: str,
        change: Callable[[spanner_pb2.SpannerConfig], spanner_pb2.SpannerConfig],
    ) -> spanner_pb2.SpannerConfig:
        """Applies ``change`` (which validates, raising InvalidError) to the stored config."""
        with self._session() as session:
            row = self._config_row(session, config_id)
            updated = change(convert.config_to_proto(row))
            self._check_config_name_free(session, updated.name, exclude_id=row.id)
            convert.config_into_row(updated, row)
            row.update_time = models.utc_now()
            self._commit_unique(session, "SpannerConfig", "name")
            return convert.config_to_proto(row)

    def delete_config(self, config_id: str) -> None:
        """Deletes a configuration and its source mappings."""
        with self._session() as session:
            row = self._config_row(session, config_id)
            session.execute(
                delete(models.SourceMapping).where(models.SourceMapping.config_id == row.id)
            )
            session.delete(row)
            session.commit()

    # DICOM nodes.

    def create_node(self, node: spanner_pb2.DicomNode) -> spanner_pb2.DicomNode:
        row = models.DicomNode(id=models.new_id())
        convert.node_into_row(node, row)
        row.create_time = row.update_time = models.utc_now()
        with self._session() as session:
            session.add(row)
            session.commit()
            return convert.node_to_proto(row)

    def get_node(self, node_id: str) -> spanner_pb2.DicomNode:
        with self._session() as session:
            return convert.node_to_proto(self._node_row(session, node_id))

    def list_nodes(
        self, after: Position | None, limit: int
    ) -> tuple[list[spanner_pb2.DicomNode], Position | None]:
        rows, position = self._page(models.DicomNode, after, limit)
        return [convert.node_to_proto(r) for r in rows], position

    def update_node(
        self, node_id: str, change: Callable[[spanner_pb2.DicomNode], spanner_pb2.DicomNode]
    ) -> spanner_pb2.DicomNode:
        with self._session() as session:
            row = self._node_row(session, node_id)
            convert.node_into_row(change(convert.node_to_proto(row)), row)
            row.update_time = models.utc_now()
            session.commit()
            return convert.node_to_proto(row)

    def delete_node(self, node_id: str) -> None:
        """Deletes a node no source mapping uses."""
        with self._session() as session:
            row = self._node_row(session, node_id)
            users = session.scalars(
                select(models.SourceMapping.config_id)
                .where(models.SourceMapping.node_id == row.id)
                .order_by(models.SourceMapping.config_id)
            ).all()
            if users:
                raise InUseError("DicomNode", node_id, list(users))
            session.delete(row)
            try:
                session.commit()
            except IntegrityError as exc:
                # A mapping added concurrently; the RESTRICT foreign key caught it.
                raise InUseError("DicomNode", node_id) from exc

    # Source mappings.

    def add_mapping(self, mapping: spanner_pb2.SourceMapping) -> spanner_pb2.SourceMapping:
        """Maps a node into a configuration; both must exist, once per pair."""
        row = models.SourceMapping(
            id=models.new_id(), config_id=mapping.config_id, node_id=mapping.node_id
        )
        convert.mapping_into_row(mapping, row)
        row.create_time = row.update_time = models.utc_now()
        with self._session() as session:
            self._config_row(session, mapping.config_id)
            self._node_row(session, mapping.node_id)
            existing = session.scalar(
                select(func.count()).where(
                    models.SourceMapping.config_id == mapping.config_id,
                    models.SourceMapping.node_id == mapping.node_id,
                )
            )
            if existing:
                raise AlreadyExistsError("SourceMapping", _MAPPING_EXISTS)
            session.add(row)
            self._commit_unique(session, "SourceMapping", "config_id, node_id")
            return convert.mapping_to_proto(row)

    def list_mappings(self, config_id: str) -> list[spanner_pb2.SourceMapping]:
        """The configuration's mappings, preferred (lowest priority) first."""
        with self._session() as session:
            self._config_row(session, config_id)
            rows = session.scalars(_preferred_first(select(models.SourceMapping), config_id))
            return [convert.mapping_to_proto(r) for r in rows.all()]

    def spanning_sources(
        self, config_id: str
    ) -> tuple[spanner_pb2.SpannerConfig, list[MappedNode]]:
        """The configuration and its (mapping, node) pairs, preferred first, read in one
        session and one join: every spanning operation starts here, so it stays cheap."""
        with self._session() as session:
            config = convert.config_to_proto(self._config_row(session, config_id))
            query = select(models.SourceMapping, models.DicomNode).join(
                models.DicomNode, models.DicomNode.id == models.SourceMapping.node_id
            )
            rows = session.execute(_preferred_first(query, config_id)).all()
            pairs = [(convert.mapping_to_proto(m), convert.node_to_proto(n)) for m, n in rows]
        return config, pairs

    def update_mapping(
        self,
        mapping_id: str,
        change: Callable[[spanner_pb2.SourceMapping], spanner_pb2.SourceMapping],
    ) -> spanner_pb2.SourceMapping:
        with self._session() as session:
            row = self._get(session, models.SourceMapping, "SourceMapping", mapping_id)
            convert.mapping_into_row(change(convert.mapping_to_proto(row)), row)
            row.update_time = models.utc_now()
            session.commit()
            return convert.mapping_to_proto(row)

    def remove_mapping(self, mapping_id: str) -> None:
        with self._session() as session:
            session.delete(self._get(session, models.SourceMapping, "SourceMapping", mapping_id))
            session.commit()

    # Query logs (written by the fan-out engine, later).

    def add_query_log(self, log: spanner_pb2.QueryLog) -> str:
        """Appends one audited operation and returns its id; the caller has redacted
        its query keys. A plain INSERT: every spanning operation writes one, and a
        session's unit of work costs several times the statement."""
        values = convert.query_log_values(log)
        with self._connection() as connection:
            connection.execute(_INSERT_QUERY_LOG, values)
        return str(values["id"])

    def list_query_logs(
        self, config_id: str, after: Position | None, limit: int
    ) -> tuple[list[spanner_pb2.QueryLog], Position | None]:
        """Newest first; all configurations when ``config_id`` is empty."""
        log = models.QueryLog
        query = select(log).order_by(log.started_at.desc(), log.id.desc()).limit(limit + 1)
        if config_id:
            query = query.where(log.config_id == config_id)
        if after is not None:
            moment, last_id = after
            query = query.where(
                or_(log.started_at < moment, and_(log.started_at == moment, log.id < last_id))
            )
        with self._session() as session:
            rows = list(session.scalars(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        position = (convert.as_utc(rows[-1].started_at), rows[-1].id) if more else None
        return [convert.query_log_to_proto(r) for r in rows], position

    # Helpers.

    def _page(self, model: Any, after: Position | None, limit: int) -> tuple[list[Any], Any]:
        query = select(model).order_by(model.create_time, model.id).limit(limit + 1)
        if after is not None:
            moment, last_id = after
            query = query.where(
                or_(
                    model.create_time > moment,
                    and_(model.create_time == moment, model.id > last_id),
                )
            )
        with self._session() as session:
            rows = list(session.scalars(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        position = (convert.as_utc(rows[-1].create_time), rows[-1].id) if more else None
        return rows, position

    def _get(self, session: Session, model: type[T], resource_type: str, resource_id: str) -> T:
        row = session.get(model, resource_id)
        if row is None:
            raise NotFoundError(resource_type, resource_id)
        return row

    def _config_row(self, session: Session, config_id: str) -> models.SpannerConfig:
        return self._get(session, models.SpannerConfig, "SpannerConfig", config_id)

    def _node_row(self, session: Session, node_id: str) -> models.DicomNode:
        return self._get(session, models.DicomNode, "DicomNode", node_id)

    def _check_config_name_free(self, session: Session, name: str, exclude_id: str | None) -> None:
        query = select(models.SpannerConfig.id).where(models.SpannerConfig.name == name)
        if exclude_id is not None:
            query = query.where(models.SpannerConfig.id != exclude_id)
        if session.scalar(query) is not None:
            raise AlreadyExistsError("SpannerConfig", _NAME_TAKEN)

    def _commit_unique(self, session: Session, resource_type: str, key: str) -> None:
        """Commits; a unique-key race lost to a concurrent writer is ALREADY_EXISTS."""
        try:
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise AlreadyExistsError(
                resource_type, f"another {resource_type} has this {key}"
            ) from exc


_CHANGED = "configuration_changed"

S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


def _preferred_first(query: S, config_id: str) -> S:
    """``query`` over one configuration's mappings, preferred (lowest priority) first."""
    return query.where(models.SourceMapping.config_id == config_id).order_by(
        models.SourceMapping.priority, models.SourceMapping.create_time, models.SourceMapping.id
    )


def _note_configuration_change(session: Session, _context: Any) -> None:
    """after_flush: remember whether anything but a query-log line was written."""
    touched = chain(session.new, session.dirty, session.deleted)
    if any(not isinstance(row, models.QueryLog) for row in touched):
        session.info[_CHANGED] = True


_NAME_TAKEN = "another SpannerConfig has this name"
_MAPPING_EXISTS = "the node is already mapped into this configuration"
