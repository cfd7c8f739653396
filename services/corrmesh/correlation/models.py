"""Correlation's tables (SQLAlchemy 2.0). Migrations: ``migrations/versions``.

The consumer writes groups, members, edges, lone events, update-log rows and
its offset in one transaction per Ingest batch, so the tables always describe
exactly the events up to ``consumer_offsets.sequence``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corrmesh.runtime.db import new_metadata

#: BIGINT, but INTEGER on SQLite so an autoincrement primary key works there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


class EventColumns:
    """What is kept of an event, as a member of a group or alone in the window."""

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    correlation_id: Mapped[str] = mapped_column(String)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    domain: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    resource_key: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[int] = mapped_column(Integer)
    #: The serialized ResourceRef.
    resource: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str] = mapped_column(Text, default="")
    event_type: Mapped[str] = mapped_column(Text, default="")
    camera_id: Mapped[str] = mapped_column(Text, default="")
    controller_id: Mapped[str] = mapped_column(Text, default="")
    detection_type: Mapped[str] = mapped_column(Text, default="")
    resolves: Mapped[bool] = mapped_column(Boolean, default=False)


class GroupRow(Base):
    __tablename__ = "groups"

    group_id: Mapped[str] = mapped_column(String, primary_key=True)
    #: Sequence of the CREATED update: ListGroups' stable order and page position.
    created_sequence: Mapped[int] = mapped_column(BigInteger, unique=True)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer, index=True)
    type: Mapped[int] = mapped_column(Integer)
    domain: Mapped[int] = mapped_column(Integer)
    severity: Mapped[int] = mapped_column(Integer)
    primary_event_id: Mapped[str] = mapped_column(String)
    member_count: Mapped[int] = mapped_column(Integer)
    aggregate_score: Mapped[float] = mapped_column(Float)
    first_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Fingerprints it remembers for recurrences, one per line.
    fingerprints: Mapped[str] = mapped_column(Text, default="")
    #: Group.metadata as JSON.
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    #: Root cause, pattern and impact: a Group message holding only those fields.
    analysis: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class GroupLinkRow(Base):
    """A continuation or recurrence link, stored from each side."""

    __tablename__ = "group_links"

    group_id: Mapped[str] = mapped_column(String, primary_key=True)
    other_group_id: Mapped[str] = mapped_column(String, primary_key=True)
    relationship_type: Mapped[int] = mapped_column(Integer)


class GroupMemberRow(EventColumns, Base):
    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(String, index=True)


class LoneEventRow(EventColumns, Base):
    """An event in the window that joined no group yet (needed to rebuild the window)."""

    __tablename__ = "lone_events"


class EdgeRow(Base):
    __tablename__ = "correlation_edges"
    __table_args__ = (UniqueConstraint("from_event_id", "to_event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String, index=True)
    from_event_id: Mapped[str] = mapped_column(String)
    to_event_id: Mapped[str] = mapped_column(String)
    score: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GroupUpdateRow(Base):
    """The durable update log WatchGroups serves."""

    __tablename__ = "group_updates"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    group_id: Mapped[str] = mapped_column(String, index=True)
    type: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    domain: Mapped[int] = mapped_column(Integer)
    severity: Mapped[int] = mapped_column(Integer)
    #: The serialized GroupUpdate.
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class ConsumerOffsetRow(Base):
    """Where a consumer of Ingest's log is, and the counters it committed with it."""

    __tablename__ = "consumer_offsets"

    consumer: Mapped[str] = mapped_column(String, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    newest_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    events_in: Mapped[int] = mapped_column(BigInteger)
    groups_created: Mapped[int] = mapped_column(BigInteger)
    late_events: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CorrelationConfigRow(Base):
    __tablename__ = "correlation_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: The serialized CorrelationConfig.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
