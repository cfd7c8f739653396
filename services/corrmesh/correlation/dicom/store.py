"""Tables and reads/writes of the DICOM part: derived memberships, alert state, the id key.

``dicom_rollup_members`` lists each event under its BATCH and PATIENT groups
(a copy of the event's columns, so a member stays listed after its event left
the window or its membership group moved). ``dicom_state`` keeps the alert
trackers' state (one row per watched correlation or per (AE, stage)) and the
secret key the derived ids are made with. Everything is written inside the
batch's transaction (:func:`write_changes`), so it is exactly as durable as
the groups it belongs to.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Index, String, Text, delete, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from corrmesh.correlation.dicom.state import RATE, STUCK, DicomChanges, DicomRestored
from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.links import add_links
from corrmesh.correlation.models import Base, EventColumns, GroupLinkRow, GroupRow
from corrmesh.correlation.rows import chunks, event_of, event_values, header_of

#: Members a BATCH or PATIENT Group message lists (the newest); member_count counts all.
MAX_LISTED_MEMBERS = 1000
_SECRET = ("secret", "derived-ids")


class RollupMemberRow(EventColumns, Base):
    """An event listed under a derived (BATCH or PATIENT) group."""

    __tablename__ = "dicom_rollup_members"
    __table_args__ = (Index("ix_dicom_rollup_members_group_sequence", "group_id", "sequence"),)

    group_id: Mapped[str] = mapped_column(String, primary_key=True)


class DicomStateRow(Base):
    """Alert-tracker state and the id key, as (kind, key) → payload."""

    __tablename__ = "dicom_state"

    kind: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    payload: Mapped[str] = mapped_column(Text)


def _upsert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(DicomStateRow)
    return statement.on_conflict_do_update(
        index_elements=["kind", "key"], set_={"payload": statement.excluded.payload}
    )


def write_changes(session: Session, changes: DicomChanges) -> None:
    """Writes ``changes`` inside the caller's transaction."""
    if changes.members:
        session.execute(
            insert(RollupMemberRow),
            [{**event_values(e), "group_id": g} for g, e in changes.members],
        )
    add_links(session, changes.links)
    if changes.state_put:
        session.execute(
            _upsert(session), [{"kind": k, "key": y, "payload": p} for k, y, p in changes.state_put]
        )
    for part in chunks(changes.state_delete):
        session.execute(
            delete(DicomStateRow).where(tuple_(DicomStateRow.kind, DicomStateRow.key).in_(part))
        )


def load_state(sessions: sessionmaker[Session]) -> DicomRestored:
    """The id key (made on first use) and the alert trackers' state."""
    with sessions.begin() as session:
        session.execute(_insert_secret(session))
    with sessions() as session:
        rows = session.execute(select(DicomStateRow.kind, DicomStateRow.key, DicomStateRow.payload))
        restored = DicomRestored()
        for kind, key, payload in rows:
            if (kind, key) == _SECRET:
                restored.secret = bytes.fromhex(payload)
            elif kind in (STUCK, RATE):
                restored.state.append((kind, key, payload))
        return restored


def _insert_secret(session: Session) -> Any:
    """Stores a fresh random key unless one is there (two starting processes agree)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(DicomStateRow)
        .values(kind=_SECRET[0], key=_SECRET[1], payload=secrets.token_hex(32))
        .on_conflict_do_nothing(index_elements=["kind", "key"])
    )


def load_headers(sessions: sessionmaker[Session], group_ids: Sequence[str]) -> list[GroupState]:
    """Headers (with links) of the stored groups among ``group_ids``, in any status."""
    found: dict[str, GroupState] = {}
    with sessions() as session:
        for part in chunks(list(group_ids)):
            for row in session.scalars(select(GroupRow).where(GroupRow.group_id.in_(part))):
                found[row.group_id] = header_of(row)
            links = select(GroupLinkRow).where(GroupLinkRow.group_id.in_(part))
            for link in session.scalars(links):
                found[link.group_id].links.append((link.other_group_id, link.relationship_type))
    return list(found.values())


def attach_members(session: Session, groups: Sequence[GroupState]) -> None:
    """Lists the newest :data:`MAX_LISTED_MEMBERS` members of each derived group.

    Counts, times and severity stay those of the group's row: they cover
    every member, listed or not.
    """
    for group in groups:
        query = (
            select(RollupMemberRow)
            .where(RollupMemberRow.group_id == group.group_id)
            .order_by(RollupMemberRow.sequence.desc())
            .limit(MAX_LISTED_MEMBERS)
        )
        group.members = {row.event_id: event_of(row) for row in session.scalars(query)}
