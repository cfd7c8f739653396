"""The durable, ordered event log.

Appends assign sequences explicitly: inside one transaction, under the writer
lock, the next sequence is the current maximum plus one. The lock is held
until the commit, so sequences are strictly increasing, gap-free, and become
visible in order (a reader that sees sequence n also sees everything below n).
In one process a thread lock serialises appends; on PostgreSQL a
transaction-scoped advisory lock does the same across Ingest replicas.

The group-commit writer appends from its own thread (:meth:`EventLog.append_blocking`);
other blocking database work runs in worker threads behind the ``async``
methods. On SQLite the append goes to the driver directly
(:mod:`corrmesh.ingest.log_sqlite`); the sequencing is the same either way
(:mod:`corrmesh.ingest.sequencing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import timestamp_pb2
from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from corrmesh.ingest.log_sqlite import SqliteAppender
from corrmesh.ingest.models import Base, EventRecord
from corrmesh.ingest.sequencing import Appended as Appended  # part of this module's interface
from corrmesh.ingest.sequencing import assign_sequences
from corrmesh.runtime.db import is_postgresql, migrate
from corrmesh.runtime.streams import Batch
from corrmesh.v1 import event_pb2

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_ingest"

#: One advisory lock per schema, so tests (and tenants) in separate schemas of
#: one database do not serialise on each other.
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.events'))")
#: Ids per "event_id IN (...)" lookup; far below SQLite's variable limit.
_LOOKUP_CHUNK = 500
#: Most sequences one Subscribe read examines, so a filter that matches
#: little never turns one read into a scan of the whole log.
SCAN_WINDOW = 50_000

_table = Base.metadata.tables[EventRecord.__tablename__]
_c = EventRecord
# Built once: constructing a statement costs more than running it from the
# compiled cache, and the writer runs these once per commit.
_HEAD_QUERY = select(func.coalesce(func.max(_c.sequence), 0))
_INSERT = insert(_table)
_KNOWN_QUERY = select(_c.event_id, _c.sequence, _c.correlation_id).where(
    _c.event_id.in_(bindparam("ids", expanding=True))
)


class LogBatch(Batch[event_pb2.Event]):
    """A Subscribe read: matching events, how far it looked, and the head it saw."""

    __slots__ = ("head",)

    def __init__(self, items: Sequence[event_pb2.Event], through: int, head: int) -> None:
        super().__init__(items, through)
        self.head = head


def _row(event: event_pb2.Event, sequence: int, ingested_at: datetime) -> dict[str, object]:
    resource = event.resource
    return {
        "sequence": sequence,
        "event_id": event.event_id,
        "correlation_id": event.correlation_id,
        "domain": int(event.domain),
        "source": event.source,
        "severity": int(event.severity),
        "cluster": resource.cluster,
        "namespace": resource.namespace,
        "type": event.type,
        "occurred_at": event.occurred_at.ToDatetime(tzinfo=UTC),
        "ingested_at": ingested_at,
        "payload": event.SerializeToString(),
    }


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EventLog:
    """Appends to and reads from the ``events`` table behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgresql = is_postgresql(engine)
        self._sqlite = SqliteAppender(engine) if engine.dialect.name == "sqlite" else None
        self._write_lock = threading.Lock()
        #: The appender's own connection, held between appends: a pool checkout
        #: and its reset on return cost more than a small append itself.
        self._writer: Connection | None = None
        #: Newest sequence this process knows to be committed.
        self.head = 0

    async def open(self) -> None:
        """Migrates the schema to head and reads the current head sequence."""
        await asyncio.to_thread(migrate, self.engine, MIGRATIONS_DIR, VERSION_TABLE)
        self.head = await asyncio.to_thread(self.read_head)

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()

    # -- writing ---------------------------------------------------------

    async def append(
        self, batches: Sequence[Sequence[event_pb2.Event]], new_ids: Set[str] = frozenset()
    ) -> list[list[Appended]]:
        """:meth:`append_blocking` in a worker thread."""
        return await asyncio.to_thread(self.append_blocking, batches, new_ids)

    def append_blocking(
        self, batches: Sequence[Sequence[event_pb2.Event]], new_ids: Set[str] = frozenset()
    ) -> list[list[Appended]]:
        """Appends every event of ``batches`` in one transaction; one result list per batch.

        Events whose event_id is already in the log (or earlier in this call)
        are not stored again: their result is the first occurrence's. Ids in
        ``new_ids`` were just assigned by this server and are not looked up.
        Stored events get ``sequence`` and ``ingested_at`` set in place before
        they are serialized. Returns after the commit.
        """
        with self._write_lock:
            if self._sqlite is not None:
                try:
                    results, head = self._sqlite.append(self._writer_connection(), batches, new_ids)
                except BaseException:
                    self._drop_writer()  # a failed append leaves no transaction behind
                    raise
                self.head = max(self.head, head)
                return results
            try:
                results, head = self._append_locked(self._writer_connection(), batches, new_ids)
            except DBAPIError as exc:
                self._drop_writer()
                if not exc.connection_invalidated:
                    raise
                # The held connection died (a database restart): the transaction
                # rolled back, so one retry on a new connection is safe.
                results, head = self._append_locked(self._writer_connection(), batches, new_ids)
            self.head = max(self.head, head)
        return results

    def _writer_connection(self) -> Connection:
        if self._writer is None:
            self._writer = self.engine.connect()
        return self._writer

    def _drop_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    def _append_locked(
        self,
        connection: Connection,
        batches: Sequence[Sequence[event_pb2.Event]],
        new_ids: Set[str],
    ) -> tuple[list[list[Appended]], int]:
        with connection.begin():
            if self._postgresql:
                connection.execute(_ADVISORY_LOCK)
            head = connection.scalar(_HEAD_QUERY) or 0
            # Read the clock under the lock, so ingested_at follows log order.
            ingested_at = datetime.now(UTC)
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(ingested_at)  # once: converting costs more than copying
            known = self._existing(
                connection,
                list({e.event_id for batch in batches for e in batch if e.event_id not in new_ids}),
            )
            results, stored, head = assign_sequences(batches, known, head, stamp)
            if stored:
                connection.execute(_INSERT, [_row(e, e.sequence, ingested_at) for e in stored])
        return results, head

    @staticmethod
    def _existing(connection: Connection, event_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for chunk in _chunks(event_ids, _LOOKUP_CHUNK):
            rows = connection.execute(_KNOWN_QUERY, {"ids": list(chunk)})
            for event_id, sequence, correlation_id in rows:
                found[event_id] = (sequence, correlation_id)
        return found

    # -- reading ---------------------------------------------------------

    def ping(self) -> bool:
        """True when the database answers."""
        with self.engine.connect() as connection:
            return connection.scalar(text("SELECT 1")) == 1

    def read_head(self) -> int:
        """The newest committed sequence (0 for an empty log)."""
        with self.engine.connect() as connection:
            return int(connection.scalar(_HEAD_QUERY) or 0)

    def read_after(
        self, after: int, limit: int, conditions: Sequence[ColumnElement[bool]] = ()
    ) -> LogBatch:
        """Up to ``limit`` matching events with sequence > ``after``, in order.

        ``through`` is the highest sequence examined, matched or not: the last
        match of a full batch, otherwise the end of the examined range.
        """
        with self.engine.connect() as connection:
            head = int(connection.scalar(_HEAD_QUERY) or 0)
            # Everything up to the head we just read is committed (sequences
            # become visible in order), so bounding by it makes the read exact.
            end = min(head, after + SCAN_WINDOW)
            if end <= after:
                return LogBatch([], after, head)
            query = (
                select(_c.sequence, _c.payload)
                .where(_c.sequence > after, _c.sequence <= end, *conditions)
                .order_by(_c.sequence)
                .limit(limit)
            )
            rows = connection.execute(query).all()
        events = [event_pb2.Event.FromString(payload) for _, payload in rows]
        through = rows[-1][0] if len(rows) == limit else end
        return LogBatch(events, through, head)

    def get(self, event_id: str) -> event_pb2.Event | None:
        """The stored event with ``event_id``, or None."""
        with self.engine.connect() as connection:
            payload = connection.scalar(select(_c.payload).where(_c.event_id == event_id))
        return None if payload is None else event_pb2.Event.FromString(payload)

    def list_page(
        self, after: int, limit: int, conditions: Sequence[ColumnElement[bool]] = ()
    ) -> tuple[list[event_pb2.Event], bool]:
        """Up to ``limit`` matching events after sequence ``after``; True when more follow."""
        query = (
            select(_c.payload)
            .where(_c.sequence > after, *conditions)
            .order_by(_c.sequence)
            .limit(limit + 1)
        )
        with self.engine.connect() as connection:
            payloads = connection.scalars(query).all()
        events = [event_pb2.Event.FromString(p) for p in payloads[:limit]]
        return events, len(payloads) > limit
