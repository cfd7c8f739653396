"""Conversions between the engine's objects and table rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from corrmesh.correlation.camera_travel import CameraStep
from corrmesh.correlation.dicom.keys import ROLLUP_TYPES
from corrmesh.correlation.groups import Edge, GroupState, datetime_us, micros_of
from corrmesh.correlation.models import (
    EdgeRow,
    EventColumns,
    GroupLinkRow,
    GroupMemberRow,
    GroupRow,
)
from corrmesh.correlation.strategies.multi_camera import NAME as MULTI_CAMERA
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2, event_pb2

#: Ids per ``IN (...)`` list: well under every backend's parameter limit.
CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def event_values(event: EventInfo) -> dict[str, Any]:
    """Column values of an event row (member or lone)."""
    return {
        "event_id": event.event_id,
        "sequence": event.sequence,
        "correlation_id": event.correlation_id,
        "occurred_at": datetime_us(event.occurred_us),
        "domain": event.domain,
        "source": event.source,
        "fingerprint": event.fingerprint,
        "resource_key": event.resource_key,
        "title": event.title,
        "severity": event.severity,
        "resource": event.resource.SerializeToString(),
        "description": event.description,
        "event_type": event.type,
        "camera_id": event.camera_id,
        "controller_id": event.controller_id,
        "detection_type": event.detection_type,
        "resolves": event.resolves,
    }


def event_of(row: EventColumns, group_id: str | None = None) -> EventInfo:
    return EventInfo(
        event_id=row.event_id,
        sequence=row.sequence,
        occurred_us=micros_of(row.occurred_at),
        correlation_id=row.correlation_id,
        domain=row.domain,
        source=row.source,
        fingerprint=row.fingerprint,
        resource_key=row.resource_key,
        resource=event_pb2.ResourceRef.FromString(row.resource),
        title=row.title,
        severity=row.severity,
        description=row.description,
        type=row.event_type,
        camera_id=row.camera_id,
        controller_id=row.controller_id,
        detection_type=row.detection_type,
        resolves=row.resolves,
        group_id=group_id,
    )


def group_values(group: GroupState) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "created_sequence": group.created_sequence,
        "title": group.title,
        "status": group.status,
        "type": group.type,
        "domain": group.domain,
        "severity": group.severity,
        "primary_event_id": group.primary_event_id,
        "member_count": group.member_count,
        "aggregate_score": group.aggregate_score,
        "first_event_at": datetime_us(group.first_us),
        "last_event_at": datetime_us(group.last_us),
        "created_at": datetime_us(group.created_us),
        "updated_at": datetime_us(group.updated_us),
        "revision": group.revision,
        "resolved_at": None if group.resolved_us is None else datetime_us(group.resolved_us),
        "fingerprints": "\n".join(group.fingerprints),
        "metadata_json": json.dumps(group.metadata, sort_keys=True),
        "analysis": None if group.analysis is None else group.analysis.SerializeToString(),
    }


def edge_values(group_id: str, edge: Edge) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "from_event_id": edge.from_event_id,
        "to_event_id": edge.to_event_id,
        "score": edge.score,
        "strategy": edge.strategy,
        "reason": edge.reason,
        "detected_at": datetime_us(edge.detected_us),
    }


def header_of(row: GroupRow) -> GroupState:
    """A group's header from its row: everything but members and edges."""
    group = GroupState(
        group_id=row.group_id,
        created_sequence=row.created_sequence,
        primary_event_id=row.primary_event_id,
        title=row.title,
        domain=row.domain,
        created_us=micros_of(row.created_at),
        updated_us=micros_of(row.updated_at),
        status=row.status,
        type=row.type,
        severity=row.severity,
        revision=row.revision,
        member_count=row.member_count,
        first_us=micros_of(row.first_event_at),
        last_us=micros_of(row.last_event_at),
        resolved_us=None if row.resolved_at is None else micros_of(row.resolved_at),
        fingerprints=[f for f in row.fingerprints.split("\n") if f],
        metadata=json.loads(row.metadata_json or "{}"),
        loaded=False,
    )
    if row.analysis:
        group.analysis = correlation_pb2.Group.FromString(row.analysis)
    # A header keeps the stored mean as one "edge" so aggregate_score reads it back.
    if row.aggregate_score:
        group.edge_score_sum, group.edge_count = row.aggregate_score, 1
    return group


def _attach_links(session: Session, groups: dict[str, GroupState], ids: Sequence[str]) -> None:
    links = select(GroupLinkRow).where(GroupLinkRow.group_id.in_(ids))
    for link in session.scalars(links.order_by(GroupLinkRow.group_id)):
        groups[link.group_id].links.append((link.other_group_id, link.relationship_type))


def load_headers(session: Session, statuses: Iterable[int], exclude: set[str]) -> list[GroupState]:
    """Headers of the groups in ``statuses`` other than ``exclude``."""
    rows = session.scalars(select(GroupRow).where(GroupRow.status.in_(list(statuses)))).all()
    headers = {r.group_id: header_of(r) for r in rows if r.group_id not in exclude}
    for part in chunks(list(headers)):
        _attach_links(session, headers, part)
    return sorted(headers.values(), key=lambda g: g.created_sequence)


def load_groups(session: Session, group_ids: Iterable[str]) -> list[GroupState]:
    """Full groups (members and edges) for ``group_ids``, in creation order."""
    ids = list(dict.fromkeys(group_ids))
    groups: dict[str, GroupState] = {}
    for part in chunks(ids):
        for row in session.scalars(select(GroupRow).where(GroupRow.group_id.in_(part))):
            header = header_of(row)
            # A derived group's counts stay its row's: its members are listed
            # elsewhere (corrmesh.correlation.dicom).
            if header.type not in ROLLUP_TYPES:
                header.member_count, header.edge_score_sum, header.edge_count = 0, 0.0, 0
                header.fingerprints = []
            header.loaded = True
            groups[row.group_id] = header
        members = select(GroupMemberRow).where(GroupMemberRow.group_id.in_(part))
        for member in session.scalars(members.order_by(GroupMemberRow.sequence)):
            groups[member.group_id].add_member(event_of(member, member.group_id))
        edges = select(EdgeRow).where(EdgeRow.group_id.in_(part)).order_by(EdgeRow.id)
        for e in session.scalars(edges):
            groups[e.group_id].add_edge(
                Edge(
                    e.from_event_id,
                    e.to_event_id,
                    e.score,
                    e.strategy,
                    e.reason,
                    micros_of(e.detected_at),
                )
            )
        _attach_links(session, groups, part)
    return sorted(groups.values(), key=lambda g: g.created_sequence)


def load_camera_steps(session: Session, limit: int) -> list[CameraStep]:
    """The pass steps behind the newest ``limit`` multi-camera edges, oldest first.

    A detection that continued a pass has an edge to each sighting of it that
    it matched; its step starts at the newest of them, as when it was placed.
    """
    source, target = aliased(GroupMemberRow), aliased(GroupMemberRow)
    rows = session.execute(
        select(
            target.event_id,
            target.sequence,
            target.occurred_at,
            target.camera_id,
            target.controller_id,
            target.detection_type,
            source.occurred_at,
            source.sequence,
            source.camera_id,
        )
        .select_from(EdgeRow)
        .join(target, target.event_id == EdgeRow.to_event_id)
        .join(source, source.event_id == EdgeRow.from_event_id)
        .where(EdgeRow.strategy == MULTI_CAMERA)
        .order_by(EdgeRow.id.desc())
        .limit(limit)
    ).all()
    # event id -> (when its newest matched sighting was, its own sequence, step)
    newest: dict[str, tuple[tuple[int, int], int, CameraStep]] = {}
    for row in rows:
        event_id, sequence, at, camera, controller, kind = row[:6]
        from_at, from_sequence, from_camera = row[6:]
        since = (micros_of(from_at), from_sequence)
        known = newest.get(event_id)
        if known is None or since > known[0]:
            lag_us = abs(micros_of(at) - since[0])
            step = CameraStep(controller, kind, from_camera, camera, lag_us)
            newest[event_id] = (since, sequence, step)
    return [step for _, _, step in sorted(newest.values(), key=lambda found: found[1])]
