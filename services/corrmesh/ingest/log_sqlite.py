"""The log's append on SQLite, through the driver's connection.

An append runs three statements (the head, the lookup of ids that may be
duplicates, the insert) and a commit for every C-STORE instance and webhook
post. Through SQLAlchemy's execution layer those statements cost more CPU
than SQLite's own work and its commit; here they are compiled once by
SQLAlchemy and then run on the DB-API connection directly. Values go through
the bind processors SQLAlchemy would apply, so the rows read back through the
models exactly as if SQLAlchemy had written them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence, Set
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import Connection, Engine, func, insert, select

from corrmesh.ingest.models import Base, EventRecord
from corrmesh.ingest.sequencing import Appended, assign_sequences
from corrmesh.v1 import event_pb2

_table = Base.metadata.tables[EventRecord.__tablename__]
#: The INSERT's columns in the order :meth:`SqliteAppender._row` gives their values.
_COLUMNS = (
    "sequence",
    "event_id",
    "correlation_id",
    "domain",
    "source",
    "severity",
    "cluster",
    "namespace",
    "type",
    "occurred_at",
    "ingested_at",
    "payload",
)
#: Ids per "event_id IN (...)" lookup; far below SQLite's variable limit.
_LOOKUP_CHUNK = 500


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqliteAppender:
    """Appends groups of batches to the ``events`` table of a SQLite engine."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = insert(_table).compile(dialect=dialect)
        # SQLite's paramstyle is positional: rows are tuples in this order.
        if tuple(compiled.positiontup or ()) != _COLUMNS:
            raise RuntimeError(f"unexpected INSERT columns: {compiled.positiontup}")
        self._insert = str(compiled)
        head = select(func.coalesce(func.max(_table.c.sequence), 0))
        self._head = str(head.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        self._lookup = (
            f"SELECT event_id, sequence, correlation_id FROM {_table.name} WHERE event_id IN "
        )
        encode = _table.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._datetime = encode or (lambda value: value)

    def append(
        self,
        connection: Connection,
        batches: Sequence[Sequence[event_pb2.Event]],
        new_ids: Set[str],
    ) -> tuple[list[list[Appended]], int]:
        """What ``EventLog.append_blocking`` returns, plus the new head; commits before returning.

        Call holding the log's write lock, with the log's own writer connection.
        """
        dbapi: Any = connection.connection.dbapi_connection
        cursor = dbapi.cursor()
        try:
            # The driver opens the transaction at the INSERT: this process is
            # the database's only writer and the write lock orders its appends.
            cursor.execute(self._head)
            head = int(cursor.fetchone()[0] or 0)
            # Read the clock under the lock, so ingested_at follows log order.
            now = datetime.now(UTC)
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(now)
            lookup = list({e.event_id for b in batches for e in b if e.event_id not in new_ids})
            known: dict[str, tuple[int, str]] = {}
            for chunk in _chunks(lookup, _LOOKUP_CHUNK):
                cursor.execute(self._lookup + f"({', '.join('?' * len(chunk))})", chunk)
                for event_id, sequence, correlation_id in cursor.fetchall():
                    known[event_id] = (sequence, correlation_id)
            results, stored, head = assign_sequences(batches, known, head, stamp)
            if stored:
                ingested_at = self._datetime(now)
                cursor.executemany(self._insert, [self._row(e, ingested_at) for e in stored])
            dbapi.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                dbapi.rollback()
            raise
        finally:
            cursor.close()
        return results, head

    def _row(self, event: event_pb2.Event, ingested_at: object) -> tuple[object, ...]:
        resource = event.resource
        return (
            event.sequence,
            event.event_id,
            event.correlation_id,
            int(event.domain),
            event.source,
            int(event.severity),
            resource.cluster,
            resource.namespace,
            event.type,
            self._datetime(event.occurred_at.ToDatetime(tzinfo=UTC)),
            ingested_at,
            event.SerializeToString(),
        )
