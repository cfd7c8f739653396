"""Correlation's database: the one-transaction batch commit, state reload, config.

:meth:`CorrelationStore.commit_batch` is the durability point of the whole
service: the groups, members, edges and lone events a batch changed, the
updates it emitted and the Ingest offset it reached are written together or
not at all. After a crash the store therefore describes exactly the events up
to the stored offset, and the consumer resumes from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Insert, Table, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from corrmesh.correlation import config as config_module
from corrmesh.correlation.conditions import HORIZON_US as CONDITION_HORIZON_US
from corrmesh.correlation.conditions import OPENS
from corrmesh.correlation.dicom import store as dicom_store
from corrmesh.correlation.groups import GroupState, datetime_us, micros_of
from corrmesh.correlation.models import (
    Base,
    ConsumerOffsetRow,
    CorrelationConfigRow,
    EdgeRow,
    GroupLinkRow,
    GroupMemberRow,
    GroupRow,
    GroupUpdateRow,
    LoneEventRow,
)
from corrmesh.correlation.plans import Changes, Restored
from corrmesh.correlation.rows import (
    chunks,
    edge_values,
    event_of,
    event_values,
    group_values,
    load_camera_steps,
    load_groups,
    load_headers,
)
from corrmesh.runtime.db import create_db_engine, migrate, session_factory
from corrmesh.v1 import correlation_pb2

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_correlation"
#: The one consumer of Ingest's log today; partitions will add more names.
CONSUMER = "ingest"
_CONFIG_ROW = 1
#: Newest multi-camera edges read back to learn the cameras' travel times again.
CAMERA_STEPS = 20_000
#: Groups whose lifecycle can still change: restored as headers when quiet.
TRACKED_STATUSES = (
    correlation_pb2.GROUP_STATUS_BUILDING,
    correlation_pb2.GROUP_STATUS_ACTIVE,
    correlation_pb2.GROUP_STATUS_STABLE,
    correlation_pb2.GROUP_STATUS_RESOLVED,
)


def _rows(model: type[Base]) -> Insert:
    """A plain INSERT into ``model``'s table, for a list of row dicts keyed by column.

    The ORM's bulk INSERT of the same rows (``insert(model)``) walks each row
    through the mapper first: a sixth of the consumer's CPU when it is busy,
    for rows that are plain column values already."""
    return insert(cast(Table, model.__table__))


def _insert_ignoring_duplicates(session: Session) -> Any:
    """INSERT into group_links that skips a link already stored (after a merge
    the same link can be made again from the other side)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(GroupLinkRow).on_conflict_do_nothing()
    return sqlite.insert(GroupLinkRow).on_conflict_do_nothing()


@dataclass(frozen=True, slots=True)
class Offset:
    """How far the consumer got: the next Subscribe starts after ``sequence``."""

    sequence: int = 0
    watermark_us: int | None = None


class CorrelationStore:
    """Owns the engine's tables; every method is blocking (call via to_thread)."""

    def __init__(self, url: str) -> None:
        self.engine = create_db_engine(url)
        self.sessions = session_factory(self.engine)

    def migrate(self) -> None:
        migrate(self.engine, MIGRATIONS_DIR, VERSION_TABLE)

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("select 1"))
        return True

    def close(self) -> None:
        self.engine.dispose()

    # -- configuration --------------------------------------------------------------

    def load_config(self) -> correlation_pb2.CorrelationConfig | None:
        with self.sessions() as session:
            row = session.get(CorrelationConfigRow, _CONFIG_ROW)
            if row is None:
                return None
            stored = correlation_pb2.CorrelationConfig.FromString(row.payload)
            return config_module.with_defaults(stored)

    def save_config(self, config: correlation_pb2.CorrelationConfig) -> None:
        with self.sessions.begin() as session:
            row = session.get(CorrelationConfigRow, _CONFIG_ROW)
            payload = config.SerializeToString()
            now = datetime.now(UTC)
            if row is None:
                session.add(CorrelationConfigRow(id=_CONFIG_ROW, payload=payload, updated_at=now))
            else:
                row.payload = payload
                row.updated_at = now

    # -- engine state ----------------------------------------------------------------

    def offset(self) -> Offset:
        with self.sessions() as session:
            row = session.get(ConsumerOffsetRow, CONSUMER)
            if row is None:
                return Offset()
            watermark = None if row.watermark is None else micros_of(row.watermark)
            return Offset(row.sequence, watermark)

    def load_state(self, window_us: int, lateness_us: int) -> tuple[int, Restored]:
        """The committed offset and the engine state inside the window at that point."""
        dicom = dicom_store.load_state(self.sessions)
        with self.sessions() as session:
            last = session.scalar(select(func.max(GroupUpdateRow.sequence))) or 0
            row = session.get(ConsumerOffsetRow, CONSUMER)
            if row is None or row.newest_event_at is None:
                offset = 0 if row is None else row.sequence
                return offset, Restored(next_sequence=last + 1, dicom=dicom)
            newest_us = micros_of(row.newest_event_at)
            horizon = datetime_us(newest_us - lateness_us - window_us)
            live = session.scalars(
                select(GroupMemberRow.group_id)
                .where(GroupMemberRow.occurred_at >= horizon)
                .distinct()
            ).all()
            # Groups that may hold an open condition stay loaded (conditions.py).
            held_since = datetime_us(newest_us - lateness_us - CONDITION_HORIZON_US)
            holding = session.scalars(
                select(GroupMemberRow.group_id)
                .where(
                    GroupMemberRow.event_type.in_(sorted(OPENS)),
                    GroupMemberRow.occurred_at >= held_since,
                )
                .distinct()
            ).all()
            live = list(dict.fromkeys([*live, *holding]))
            loners = session.scalars(
                select(LoneEventRow)
                .where(LoneEventRow.occurred_at >= horizon)
                .order_by(LoneEventRow.sequence)
            ).all()
            return row.sequence, Restored(
                newest_us=newest_us,
                next_sequence=last + 1,
                events_in=row.events_in,
                groups_created=row.groups_created,
                late_events=row.late_events,
                groups=load_groups(session, live),
                headers=load_headers(session, TRACKED_STATUSES, set(live)),
                loners=[event_of(r) for r in loners],
                dicom=dicom,
                camera_steps=load_camera_steps(session, CAMERA_STEPS),
            )

    def load_groups(self, group_ids: list[str]) -> list[GroupState]:
        """Full committed groups, for a manual edit."""
        with self.sessions() as session:
            return load_groups(session, group_ids)

    def group_ids_of(self, event_ids: list[str]) -> dict[str, str]:
        """event id -> id of the group it is a member of (committed)."""
        with self.sessions() as session:
            found: dict[str, str] = {}
            for part in chunks(event_ids):
                query = select(GroupMemberRow.event_id, GroupMemberRow.group_id).where(
                    GroupMemberRow.event_id.in_(part)
                )
                found.update({e: g for e, g in session.execute(query).all()})
            return found

    def commit_batch(self, changes: Changes, through_sequence: int) -> None:
        """Writes one batch's changes and the offset ``through_sequence`` atomically."""
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            if changes.new_groups:
                session.execute(_rows(GroupRow), [group_values(g) for g in changes.new_groups])
            if changes.changed_groups:
                session.execute(update(GroupRow), [group_values(g) for g in changes.changed_groups])
            for old, into in changes.absorbed.items():
                session.execute(
                    update(GroupMemberRow)
                    .where(GroupMemberRow.group_id == old)
                    .values(group_id=into)
                )
                session.execute(
                    update(EdgeRow).where(EdgeRow.group_id == old).values(group_id=into)
                )
                self._move_links(session, old, into)
                session.execute(delete(GroupRow).where(GroupRow.group_id == old))
            if changes.rewritten:
                self._rewrite(session, changes.rewritten)
            if changes.new_links:
                session.execute(
                    _insert_ignoring_duplicates(session),
                    [
                        {"group_id": g, "other_group_id": o, "relationship_type": t}
                        for g, o, t in changes.new_links
                    ],
                )
            if changes.new_members:
                session.execute(
                    _rows(GroupMemberRow),
                    [{**event_values(m), "group_id": m.group_id} for m in changes.new_members],
                )
            for part in chunks(changes.lone_removed):
                session.execute(delete(LoneEventRow).where(LoneEventRow.event_id.in_(part)))
            if changes.horizon_us is not None:
                session.execute(
                    delete(LoneEventRow).where(
                        LoneEventRow.occurred_at < datetime_us(changes.horizon_us)
                    )
                )
            if changes.lone_added:
                session.execute(_rows(LoneEventRow), [event_values(e) for e in changes.lone_added])
            if changes.new_edges:
                session.execute(_rows(EdgeRow), [edge_values(g, e) for g, e in changes.new_edges])
            if changes.updates:
                session.execute(
                    _rows(GroupUpdateRow),
                    [
                        {
                            "sequence": u.sequence,
                            "group_id": u.group.group_id,
                            "type": u.type,
                            "status": u.group.status,
                            "domain": u.group.domain,
                            "severity": u.group.severity,
                            "payload": u.SerializeToString(),
                        }
                        for u in changes.updates
                    ],
                )
            dicom_store.write_changes(session, changes.dicom)
            self._store_offset(session, changes, through_sequence, now)

    @staticmethod
    def _move_links(session: Session, old: str, into: str) -> None:
        """``old``'s links become ``into``'s: links between the two and links
        ``into`` already has go, so no link is stored twice."""
        link = GroupLinkRow
        session.execute(
            delete(link).where(
                or_(
                    and_(link.group_id == old, link.other_group_id == into),
                    and_(link.group_id == into, link.other_group_id == old),
                )
            )
        )
        has_out = select(link.other_group_id).where(link.group_id == into)
        session.execute(delete(link).where(link.group_id == old, link.other_group_id.in_(has_out)))
        session.execute(update(link).where(link.group_id == old).values(group_id=into))
        has_in = select(link.group_id).where(link.other_group_id == into)
        session.execute(delete(link).where(link.other_group_id == old, link.group_id.in_(has_in)))
        session.execute(update(link).where(link.other_group_id == old).values(other_group_id=into))

    @staticmethod
    def _rewrite(session: Session, groups: list[GroupState]) -> None:
        """Writes the members and edges of ``groups`` again whole (after a split).

        Everything old goes first: a moved edge keeps its (from, to) key.
        """
        for group in groups:
            for part in chunks(list(group.members)):
                session.execute(delete(GroupMemberRow).where(GroupMemberRow.event_id.in_(part)))
            session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == group.group_id))
            session.execute(delete(EdgeRow).where(EdgeRow.group_id == group.group_id))
        members = [
            {**event_values(m), "group_id": g.group_id} for g in groups for m in g.members.values()
        ]
        if members:
            session.execute(_rows(GroupMemberRow), members)
        edges = [edge_values(g.group_id, e) for g in groups for e in g.edges]
        if edges:
            session.execute(_rows(EdgeRow), edges)

    @staticmethod
    def _store_offset(
        session: Session, changes: Changes, through_sequence: int, now: datetime
    ) -> None:
        watermark, newest = changes.watermark_us, changes.newest_us
        values = {
            "sequence": through_sequence,
            "watermark": None if watermark is None else datetime_us(watermark),
            "newest_event_at": None if newest is None else datetime_us(newest),
            "events_in": changes.events_in,
            "groups_created": changes.groups_created,
            "late_events": changes.late_events,
            "updated_at": now,
        }
        row = session.get(ConsumerOffsetRow, CONSUMER)
        if row is None:
            session.add(ConsumerOffsetRow(consumer=CONSUMER, **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
