"""Topology's tables: declared resources and dependencies, and the change log.

Kubernetes objects are not stored: a restart relists them. Declared
dependencies are the state only Topology holds, so they live here, together
with the resources they imply. The change log backs WatchTopology: every
graph change is appended with a sequence a subscriber resumes from.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corrmesh.runtime.db import new_metadata

#: SQLite only autoincrements an INTEGER PRIMARY KEY; elsewhere it is 64-bit.
SequenceInteger = BigInteger().with_variant(Integer(), "sqlite")

NAME_LENGTH = 253
KEY_LENGTH = 1100
DESCRIPTION_LENGTH = 1024


class Base(DeclarativeBase):
    metadata = new_metadata()


class DeclaredResource(Base):
    """A resource named by a declared dependency, under the graph key it got."""

    __tablename__ = "declared_resources"

    id: Mapped[int] = mapped_column(SequenceInteger, primary_key=True, autoincrement=True)
    resource_key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    kind: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    uid: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    api_version: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeclaredDependency(Base):
    """``dependent`` depends on ``dependency`` (an EDGE_TYPE_DEPENDENCY edge)."""

    __tablename__ = "declared_dependencies"
    __table_args__ = (UniqueConstraint("dependent_id", "dependency_id"),)

    id: Mapped[int] = mapped_column(SequenceInteger, primary_key=True, autoincrement=True)
    dependent_id: Mapped[int] = mapped_column(
        ForeignKey("declared_resources.id", ondelete="CASCADE"), index=True
    )
    dependency_id: Mapped[int] = mapped_column(
        ForeignKey("declared_resources.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(String(DESCRIPTION_LENGTH), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChangeLogEntry(Base):
    """One graph change, in the order subscribers see them."""

    __tablename__ = "topology_changes"

    sequence: Mapped[int] = mapped_column(SequenceInteger, primary_key=True, autoincrement=True)
    #: A ChangeType value.
    type: Mapped[int] = mapped_column(Integer)
    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    #: Indexed for trimming by age.
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: The serialized TopologyChange, its sequence left 0 (the column holds it).
    change: Mapped[bytes] = mapped_column(LargeBinary)
