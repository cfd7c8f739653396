"""SubmitFeedback through the real server: stored, weights moved, applied and persisted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from corrmesh.correlation.config import strategy_settings
from corrmesh.correlation.feedback import FeedbackRow
from corrmesh.correlation.models import EdgeRow, GroupMemberRow, GroupRow
from corrmesh.correlation.store import CorrelationStore
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import event
from tests.support.correlation_mesh import Mesh, mesh

F = correlation_pb2.FeedbackType
K8S = event_pb2.DOMAIN_KUBERNETES
DICOM = event_pb2.DOMAIN_DICOM


async def submit(
    m: Mesh, group_id: str, kind: int, event_id: str = "", comment: str = ""
) -> correlation_pb2.SubmitFeedbackResponse:
    return await m.correlation.SubmitFeedback(
        correlation_pb2.SubmitFeedbackRequest(
            group_id=group_id,
            type=kind,  # type: ignore[arg-type]
            event_id=event_id,
            comment=comment,
        )
    )


def weights(response: correlation_pb2.SubmitFeedbackResponse) -> dict[tuple[str, int], float]:
    return {(w.strategy, w.domain): round(w.weight, 6) for w in response.weights}


def stored_feedback(store: CorrelationStore) -> list[FeedbackRow]:
    with store.sessions() as session:
        return list(session.scalars(select(FeedbackRow).order_by(FeedbackRow.created_at)))


async def test_feedback_on_a_formed_group_moves_and_persists_weights(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        sequences = await m.publish(
            event(0, event_id="a", fingerprint="f-1"),
            event(5, event_id="b", fingerprint="f-1"),
            event(9, event_id="c", fingerprint="f-1"),
            # Far outside the window, so no strategy could have joined it.
            event(2000, event_id="alone", fingerprint="f-2", title="Disk pressure on node"),
        )
        await m.consumed(sequences[-1])
        group = (
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id="c")
            )
        ).group
        assert {x.event_id for x in group.members} >= {"a", "b", "c"}
        touching_c = sorted(
            {e.strategy for e in group.edges if "c" in (e.from_event_id, e.to_event_id)}
        )
        everyone = sorted({e.strategy for e in group.edges})
        assert touching_c

        wrong = await submit(m, group.group_id, F.FEEDBACK_TYPE_WRONG_MEMBER, "c", "not ours")
        assert uuid.UUID(wrong.feedback_id)
        assert weights(wrong) == {(name, K8S): 0.9 for name in touching_c}

        good = await submit(m, group.group_id, F.FEEDBACK_TYPE_GOOD_GROUP)
        assert weights(good) == {
            (name, K8S): 0.91 if name in touching_c else 1.0 for name in everyone
        }

        missed = await submit(m, group.group_id, F.FEEDBACK_TYPE_MISSED_LINK, "alone")
        assert list(missed.weights) == []

        # Applied to the engine, visible in GetConfig, and persisted for a restart.
        config = (await m.correlation.GetConfig(correlation_pb2.GetConfigRequest())).config
        assert m.app.engine.config == config
        assert await asyncio.to_thread(m.app.store.load_config) == config
        for name in touching_c:
            assert strategy_settings(config, name, K8S).weight == pytest.approx(0.91)
            assert strategy_settings(config, name, DICOM).weight == 1.0

        rows = stored_feedback(m.app.store)
        assert [(r.feedback_id, r.type, r.event_id, r.domain) for r in rows] == [
            (wrong.feedback_id, F.FEEDBACK_TYPE_WRONG_MEMBER, "c", K8S),
            (good.feedback_id, F.FEEDBACK_TYPE_GOOD_GROUP, "", K8S),
            (missed.feedback_id, F.FEEDBACK_TYPE_MISSED_LINK, "alone", K8S),
        ]
        assert rows[0].comment == "not ours"
        assert rows[0].strategies == touching_c
        assert rows[2].strategies == []


def _insert_group(store: CorrelationStore, group_id: str, domain: int) -> None:
    """A DICOM group a, b, c: a→b by fingerprint, b→c by temporal, a→c by pattern."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with store.sessions.begin() as session:
        session.add(
            GroupRow(
                group_id=group_id,
                created_sequence=10_000,
                title="Association failures",
                status=correlation_pb2.GROUP_STATUS_ACTIVE,
                type=correlation_pb2.GROUP_TYPE_UNSPECIFIED,
                domain=domain,
                severity=event_pb2.SEVERITY_ERROR,
                primary_event_id="d-a",
                member_count=3,
                aggregate_score=0.8,
                first_event_at=now,
                last_event_at=now,
                created_at=now,
                updated_at=now,
                revision=1,
            )
        )
        for name in ("d-a", "d-b", "d-c"):
            session.add(
                GroupMemberRow(
                    group_id=group_id,
                    event_id=name,
                    sequence=10_000,
                    correlation_id=f"corr-{name}",
                    occurred_at=now,
                    domain=domain,
                    source="dicom/test",
                    fingerprint="",
                    resource_key="",
                    title="Association rejected",
                    severity=event_pb2.SEVERITY_ERROR,
                    resource=b"",
                )
            )
        for source, target, strategy in (
            ("d-a", "d-b", "fingerprint"),
            ("d-b", "d-c", "temporal"),
            ("d-a", "d-c", "pattern"),
        ):
            session.add(
                EdgeRow(
                    group_id=group_id,
                    from_event_id=source,
                    to_event_id=target,
                    score=0.9,
                    strategy=strategy,
                    reason="test edge",
                    detected_at=now,
                )
            )


async def test_wrong_member_lowers_the_strategies_of_its_edges_in_the_groups_domain(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        _insert_group(m.app.store, "g-dicom", DICOM)
        before = m.app.engine.config
        # d-b was joined by fingerprint and joined d-c by temporal; pattern never touched it.
        wrong = await submit(m, "g-dicom", F.FEEDBACK_TYPE_WRONG_MEMBER, "d-b")
        assert weights(wrong) == {("fingerprint", DICOM): 0.9, ("temporal", DICOM): 0.9}
        after = m.app.engine.config
        assert strategy_settings(after, "pattern", DICOM).weight == 1.0
        assert (
            strategy_settings(after, "fingerprint", K8S).weight
            == strategy_settings(before, "fingerprint", K8S).weight
        )
        dicom_entries = [(e.name, e.domain) for e in after.strategies if e.domain == DICOM]
        assert sorted(dicom_entries) == [("fingerprint", DICOM), ("temporal", DICOM)]


async def test_bad_feedback_is_named_and_changes_nothing(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        _insert_group(m.app.store, "g-dicom", DICOM)
        before = m.app.engine.config
        cases: list[tuple[str, int, str, grpc.StatusCode, list[str]]] = [
            ("", 0, "", grpc.StatusCode.INVALID_ARGUMENT, ["group_id", "type"]),
            (
                "g-dicom",
                F.FEEDBACK_TYPE_WRONG_MEMBER,
                "",
                grpc.StatusCode.INVALID_ARGUMENT,
                ["event_id"],
            ),
            (
                "g-dicom",
                F.FEEDBACK_TYPE_WRONG_MEMBER,
                "elsewhere",
                grpc.StatusCode.INVALID_ARGUMENT,
                ["event_id"],
            ),
            (
                "g-dicom",
                F.FEEDBACK_TYPE_MISSED_LINK,
                "d-a",
                grpc.StatusCode.INVALID_ARGUMENT,
                ["event_id"],
            ),
            ("g-missing", F.FEEDBACK_TYPE_GOOD_GROUP, "", grpc.StatusCode.NOT_FOUND, []),
        ]
        for group_id, kind, event_id, code, fields in cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await submit(m, group_id, kind, event_id)
            assert error.value.code() == code, (group_id, kind, event_id)
            assert bad_request_fields(error.value) == fields
        status = rpc_status.from_call(error.value)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.ResourceInfo()
        assert status.details[0].Unpack(info)
        assert (info.resource_type, info.resource_name) == ("group", "g-missing")
        assert m.app.engine.config == before
        assert stored_feedback(m.app.store) == []
