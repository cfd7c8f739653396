"""The event log's table.

One row per accepted event. ``sequence`` is the log position (assigned by
:mod:`corrmesh.ingest.log`, strictly increasing and gap-free); the columns
beside the payload exist so Subscribe and ListEvents filter in SQL. The
payload is the serialized Event with its output-only fields filled, so a
reader serves it without rebuilding it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corrmesh.ingest.validation import (
    MAX_ID_CHARS,
    MAX_RESOURCE_CHARS,
    MAX_SOURCE_CHARS,
    MAX_TYPE_CHARS,
)
from corrmesh.runtime.db import new_metadata

#: BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY"
#: is the rowid (BIGINT there would be a plain column).
SequenceType = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


class EventRecord(Base):
    """One event of the log.

    Indexed: the columns filters select on with useful selectivity. Domain and
    severity have five values each, so an index would rarely beat reading the
    log in sequence order and would slow every append.
    """

    __tablename__ = "events"

    # Assigned explicitly under the writer lock, never by the database.
    sequence: Mapped[int] = mapped_column(SequenceType, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), unique=True)
    correlation_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), index=True)
    domain: Mapped[int] = mapped_column(SmallInteger)
    source: Mapped[str] = mapped_column(String(MAX_SOURCE_CHARS), index=True)
    severity: Mapped[int] = mapped_column(SmallInteger)
    # From the event's resource; "" when it has none.
    cluster: Mapped[str] = mapped_column(String(MAX_RESOURCE_CHARS), index=True)
    namespace: Mapped[str] = mapped_column(String(MAX_RESOURCE_CHARS), index=True)
    type: Mapped[str] = mapped_column(String(MAX_TYPE_CHARS), index=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
