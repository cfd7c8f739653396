"""DICOM batch, patient and prior groups and DICOM alerts, through the real mesh.

Steps are published to Ingest as its C-STORE SCP publishes them; Correlation
(on SQLite and on PostgreSQL) derives the groups, links and alerts, and is
restarted on the same database to show they are durable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from sqlalchemy import select

from corrmesh.correlation.models import Base
from corrmesh.correlation.store import CorrelationStore
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_mesh import Mesh, mesh, watch
from tests.support.dicom_steps import (
    PATIENT,
    RECEIVED,
    association,
    identifiers,
    instance,
    step,
)

pytestmark = pytest.mark.timeout(120)
R = correlation_pb2.RelationshipType
BATCH, PATIENT_GROUP = correlation_pb2.GROUP_TYPE_BATCH, correlation_pb2.GROUP_TYPE_PATIENT
ALERT = correlation_pb2.GROUP_UPDATE_TYPE_ALERT


async def publish(m: Mesh, events: list[event_pb2.Event]) -> None:
    sequences = await m.publish(*events)
    await m.consumed(sequences[-1])


async def listed(m: Mesh, kind: int) -> list[correlation_pb2.Group]:
    request = correlation_pb2.ListGroupsRequest(types=[kind])  # type: ignore[list-item]
    return list((await m.correlation.ListGroups(request)).groups)


async def group(m: Mesh, group_id: str) -> correlation_pb2.Group:
    return (await m.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id=group_id))).group


async def related(m: Mesh, correlation_id: str, *types: int) -> dict[str, tuple[int, int]]:
    request = correlation_pb2.ListRelatedRequest(
        correlation_id=correlation_id,
        transitive=True,
        relationship_types=list(types),  # type: ignore[arg-type]
    )
    answer = await m.correlation.ListRelated(request)
    return {r.correlation_id: (r.relationship_type, r.depth) for r in answer.related}


async def configure(m: Mesh, config: correlation_pb2.CorrelationConfig, *paths: str) -> None:
    await m.correlation.UpdateConfig(
        correlation_pb2.UpdateConfigRequest(
            config=config, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
    )


def no_patient_id_stored(url: str) -> None:
    """Every value of every Correlation table, read back: the patient id is nowhere."""
    store = CorrelationStore(url)
    try:
        with store.sessions() as session:
            for table in Base.metadata.sorted_tables:
                for row in session.execute(select(table)):
                    for value in row:
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        assert PATIENT.encode() not in raw, table.name
    finally:
        store.close()


async def test_batch_patient_and_prior_groups_are_linked_served_and_durable(
    database_url: str, tmp_path: Path
) -> None:
    first, second, third = association("CT1"), association("CT2"), association("CT1")
    exam = [
        *instance(first, identifiers(number=1), 0),
        *instance(first, identifiers(number=2), 1),
        *instance(second, identifiers(number=3), 30),
    ]
    later_exam = instance(third, identifiers(accession="ACC-2", study="1.2.826.0.1.10"), 60)
    async with mesh(database_url, tmp_path) as m:
        await publish(m, [*exam, *later_exam])
        batches = {g.metadata["exam"]: g for g in await listed(m, BATCH)}
        (patient,) = await listed(m, PATIENT_GROUP)
        assert set(batches) == {"accession ACC-1", "accession ACC-2"}
        batch, later = batches["accession ACC-1"], batches["accession ACC-2"]
        assert {e.member_count for e in batches.values()} == {6, 2}
        assert patient.member_count == 8 and patient.title.endswith(": 2 exams")

        # Members are the steps of both associations of the exam; the membership
        # group of each step is still its association's.
        full = await group(m, batch.group_id)
        assert {x.event_id for x in full.members} == {e.event_id for e in exam}
        assert {x.correlation_id for x in full.members} == {
            first.association_id,
            second.association_id,
        }
        assert {(x.group_id, x.relationship_type) for x in full.links} == {
            (patient.group_id, R.RELATIONSHIP_TYPE_BATCH),
            (later.group_id, R.RELATIONSHIP_TYPE_PRIOR),
        }
        own = await m.correlation.GetGroupForEvent(
            correlation_pb2.GetGroupForEventRequest(event_id=exam[0].event_id)
        )
        assert own.group.type == correlation_pb2.GROUP_TYPE_ASSOCIATION

        # From an association: its batch, the patient, the other association, the later exam.
        reached = await related(m, first.association_id)
        assert reached[batch.group_id] == (R.RELATIONSHIP_TYPE_RELATED, 1)
        assert reached[patient.group_id] == (R.RELATIONSHIP_TYPE_BATCH, 2)
        assert reached[later.group_id] == (R.RELATIONSHIP_TYPE_PRIOR, 2)
        assert reached[second.association_id] == (R.RELATIONSHIP_TYPE_RELATED, 2)
        assert await related(m, later.group_id, R.RELATIONSHIP_TYPE_PRIOR) == {
            batch.group_id: (R.RELATIONSHIP_TYPE_PRIOR, 1)
        }

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await m.correlation.MergeGroups(
                correlation_pb2.MergeGroupsRequest(group_ids=[batch.group_id, own.group.group_id])
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(refused.value) == ["group_ids[0]"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await m.correlation.SplitGroup(
                correlation_pb2.SplitGroupRequest(
                    group_id=batch.group_id, event_ids=[exam[0].event_id]
                )
            )
        assert bad_request_fields(refused.value) == ["group_id"]
        resolved = await m.correlation.ResolveGroup(
            correlation_pb2.ResolveGroupRequest(group_id=batch.group_id, note="read")
        )
        assert resolved.group.status == correlation_pb2.GROUP_STATUS_RESOLVED
        assert (await group(m, batch.group_id)).member_count == 6

    # A restart on the same database: the same groups, and a late image of the
    # first exam lands in its batch. Then both exams go quiet for long enough to
    # be archived (out of memory); another image reopens the same batch.
    async with mesh(database_url, tmp_path) as m:
        assert {g.group_id for g in await listed(m, BATCH)} == {batch.group_id, later.group_id}
        late = association("CT2")
        await publish(m, instance(late, identifiers(number=4), 90))
        woken = await group(m, batch.group_id)
        assert (woken.member_count, woken.status) == (8, correlation_pb2.GROUP_STATUS_ACTIVE)
        # Stable an hour after its last step, archived a week later (the defaults).
        eight_days = 8 * 86_400
        await publish(m, instance(association("MR9"), identifiers(patient="P-2"), eight_days))
        archived = await group(m, batch.group_id)
        assert archived.status == correlation_pb2.GROUP_STATUS_ARCHIVED
        assert batch.group_id not in m.app.engine.headers
        await publish(m, instance(association("CT1"), identifiers(number=5), eight_days + 1))
        reopened = await group(m, batch.group_id)
        assert reopened.status == correlation_pb2.GROUP_STATUS_ACTIVE
        assert reopened.member_count == 10
        assert len(await listed(m, BATCH)) == 3  # the two exams and P-2's
        (patient,) = [g for g in await listed(m, PATIENT_GROUP) if g.group_id == patient.group_id]
        assert patient.member_count == 12
    await asyncio.to_thread(no_patient_id_stored, database_url)


async def test_stuck_and_error_rate_alerts_are_group_updates_once_and_durable(
    database_url: str, tmp_path: Path
) -> None:
    alerts = correlation_pb2.DicomAlertConfig(
        stuck_after=duration_pb2.Duration(seconds=60),
        complete_at=event_pb2.PROCESSING_STAGE_STORED,
        error_rate_threshold=0.5,
        error_min_count=3,
        error_window=duration_pb2.Duration(seconds=300),
    )
    config = correlation_pb2.CorrelationConfig(
        dicom_alerts=alerts, allowed_lateness=duration_pb2.Duration()
    )
    stuck, resumed = association("US1"), association("US1")
    failing = [association("MODALITY2") for _ in range(4)]

    def failure(index: int, at: float) -> list[event_pb2.Event]:
        ids = identifiers(patient=f"P-{index}", accession=f"F-{index}", number=index)
        return instance(failing[index], ids, at, error="[Errno 28] No space left on device")

    async with mesh(database_url, tmp_path) as m:
        rejected = correlation_pb2.DicomAlertConfig(
            stuck_after=duration_pb2.Duration(seconds=-1),
            complete_at=event_pb2.PROCESSING_STAGE_RECEIVED,
            error_rate_threshold=1.5,
            error_min_count=-1,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await configure(
                m, correlation_pb2.CorrelationConfig(dicom_alerts=rejected), "dicom_alerts"
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(bad_request_fields(error.value)) == [
            f"config.dicom_alerts.{name}"
            for name in (
                "complete_at",
                "error_min_count",
                "error_rate_threshold",
                "error_window",
                "stuck_after",
            )
        ]
        await configure(m, config, "dicom_alerts", "allowed_lateness")
        got = (await m.correlation.GetConfig(correlation_pb2.GetConfigRequest())).config
        assert got.dicom_alerts == alerts

        await publish(
            m,
            [
                *instance(stuck, identifiers(patient="P-S", accession="S-1", number=1), 0),
                step(stuck, identifiers(patient="P-S", accession="S-1", number=2), RECEIVED, 1),
                *failure(0, 10),
                *failure(1, 11),
                *failure(2, 12),
                # Another sender's work 2 minutes later: the watermark finds the stall.
                *instance(association("CT7"), identifiers(patient="P-7", accession="C-7"), 121),
            ],
        )
        before, through = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(),
            lambda updates, _t: len([u for u in updates if u.type == ALERT]) >= 6,
        )
        told = {u.group.group_id: u.alert for u in before if u.type == ALERT}
        assert len(told) == len([u for u in before if u.type == ALERT]), "one alert a group"
        stuck_alerts = {g: text for g, text in told.items() if text.startswith("Stuck: ")}
        assert sorted(stuck_alerts.values()) == [
            f"Stuck: association {stuck.association_id[:8]} from US1: 1 instance(s) "
            "received but not stored; no step for 1m",
            "Stuck: exam accession S-1: 1 instance(s) received but not stored; no step for 1m",
        ]
        rate_alerts = {g for g, text in told.items() if text.startswith("STORED failures")}
        assert {g for g in rate_alerts if g.startswith("dicom-batch-")} == {
            b.group_id
            for b in await listed(m, BATCH)
            if b.metadata["exam"].startswith("accession F-")
        }
        some = next(iter(stuck_alerts))
        assert (await group(m, some)).metadata["last_alert"] == stuck_alerts[some]
        # An association with two instances in flight when Correlation stops.
        await publish(
            m,
            [
                step(resumed, identifiers(patient="P-R", accession="R-1", number=n), RECEIVED, at)
                for n, at in ((1, 130), (2, 130.5))
            ],
        )

    async with mesh(database_url, tmp_path) as m:
        # The failure window and the watch came back: a fourth failure tells only its new
        # batch, and the watermark moving on finds the step left in flight.
        await publish(
            m,
            [
                *failure(3, 140),
                *instance(association("CT7"), identifiers(patient="P-8", accession="C-8"), 200),
            ],
        )
        after, _ = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(after_sequence=through),
            lambda updates, _t: any(
                u.type == ALERT and u.alert.startswith("Stuck: exam accession R-1") for u in updates
            ),
        )
        fresh = {u.group.group_id: u.alert for u in after if u.type == ALERT}
        new_batches = {g for g, text in fresh.items() if text.startswith("STORED failures")}
        assert not new_batches & rate_alerts, "no group is told twice in one crossing"
        assert any(text.startswith("Stuck: association ") for text in fresh.values())
        assert {g for g in new_batches if g.startswith("dicom-batch-")} == {
            b.group_id for b in await listed(m, BATCH) if b.metadata["exam"] == "accession F-3"
        }
        assert fresh[next(g for g in fresh if fresh[g].startswith("STORED"))].startswith(
            "STORED failures from MODALITY2: 4 of 4 step(s) (100%)"
        )
