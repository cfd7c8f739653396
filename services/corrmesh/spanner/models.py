"""Spanner's tables: DICOM nodes, spanner configurations, the source mappings
joining them, and the audit log of spanning operations.

Ids are UUID strings made by the server. Enums are stored by their proto name
without the type prefix ("BEST_EFFORT"), so renumbering an enum can never
change stored meaning. Durations are stored as integer nanoseconds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corrmesh.runtime.db import new_metadata

ID_LENGTH = 36
NAME_LENGTH = 200
HOST_LENGTH = 255
URL_LENGTH = 2048
PATH_LENGTH = 4096
AE_TITLE_LENGTH = 16
ENUM_LENGTH = 32


def new_id() -> str:
    """A fresh resource id."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = new_metadata()


class DicomNode(Base):
    """A PACS the spanner queries (DIMSE and/or DICOMweb)."""

    __tablename__ = "dicom_nodes"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    description: Mapped[str] = mapped_column(Text, default="")
    ae_title: Mapped[str] = mapped_column(String(AE_TITLE_LENGTH))
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    port: Mapped[int] = mapped_column(Integer)
    dicomweb_base_url: Mapped[str] = mapped_column(String(URL_LENGTH), default="")
    tls_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    tls_ca_cert_path: Mapped[str] = mapped_column(String(PATH_LENGTH), default="")
    tls_cert_path: Mapped[str] = mapped_column(String(PATH_LENGTH), default="")
    tls_key_path: Mapped[str] = mapped_column(String(PATH_LENGTH), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    __table_args__ = (Index("ix_dicom_nodes_create_time_id", "create_time", "id"),)


class SpannerConfig(Base):
    """How one spanning configuration fans out, folds duplicates and fails."""

    __tablename__ = "spanner_configs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    max_concurrent_sources: Mapped[int] = mapped_column(Integer)
    query_timeout_ns: Mapped[int] = mapped_column(BigInteger)
    failure_strategy: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    minimum_success_threshold: Mapped[int] = mapped_column(Integer, default=0)
    deduplication_strategy: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    supports_dimse_scp: Mapped[bool] = mapped_column(Boolean, default=False)
    supports_qido: Mapped[bool] = mapped_column(Boolean, default=False)
    supports_wado: Mapped[bool] = mapped_column(Boolean, default=False)
    supports_cmove: Mapped[bool] = mapped_column(Boolean, default=False)
    supports_cget: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cache_ttl_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    __table_args__ = (Index("ix_spanner_configs_create_time_id", "create_time", "id"),)


class SourceMapping(Base):
    """A node taking part in a configuration; one mapping per (config, node)."""

    __tablename__ = "source_mappings"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    # Deleting a configuration takes its mappings with it ...
    config_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("spanner_configs.id", ondelete="CASCADE")
    )
    # ... but a node in use cannot go (the servicer says FAILED_PRECONDITION first).
    node_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("dicom_nodes.id", ondelete="RESTRICT"), index=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # 0 inherits the configuration's query_timeout.
    timeout_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    protocol: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    __table_args__ = (UniqueConstraint("config_id", "node_id"),)


class QueryLog(Base):
    """One audited spanning operation; append-only.

    ``config_id`` is deliberately not a foreign key: the audit trail outlives
    the configuration it was made under. ``query_keys`` is stored already
    redacted (no patient names or birth dates).
    """

    __tablename__ = "query_logs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    config_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    operation: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    requested_by: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    level: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    query_keys: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SourceStatus messages in their proto JSON form.
    sources: Mapped[list[Any]] = mapped_column(JSON, default=list)
    matches_before_dedup: Mapped[int] = mapped_column(Integer, default=0)
    matches_after_dedup: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(ENUM_LENGTH))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    elapsed_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    __table_args__ = (
        Index("ix_query_logs_started_at_id", "started_at", "id"),
        Index("ix_query_logs_config_id_started_at_id", "config_id", "started_at", "id"),
    )
