"""Real studies sent with dcmtk's storescu through Ingest's SCP, analysed by Correlation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from corrmesh.v1 import correlation_pb2, event_pb2
from corrmesh.v1.ingest_pb2_grpc import IngestServiceStub
from tests.support.correlation_mesh import mesh, watch
from tests.support.dicom_peers import require_dicom_peers
from tests.support.ingest import all_events, storescu, write_study

pytestmark = pytest.mark.timeout(120)

ROOT = "1.2.826.0.1.3680043.10.1201.78"
FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
SUCCEEDED = event_pb2.PROCESSING_OUTCOME_SUCCEEDED
PATIENT_NAMES = ("Delta^Dora", "Epsilon^Emil")
NAME_PARTS = [part for name in PATIENT_NAMES for part in name.split("^")]


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_dicom_peers()


async def test_storage_failure_shows_as_bottleneck_and_failure_rate(
    database_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "dicom"
    good = write_study(tmp_path / "good", f"{ROOT}.1", 4, "PID-D", PATIENT_NAMES[0])
    blocked = write_study(tmp_path / "blocked", f"{ROOT}.2", 4, "PID-E", PATIENT_NAMES[1])
    # A file where the blocked study's folder should be: every instance of it fails to store.
    store.mkdir()
    (store / f"{ROOT}.2").write_text("not a folder")
    settings = {"ingest_dicom_port": 0, "var_dir": tmp_path, "ingest_dicom_store_dir": str(store)}
    async with mesh(database_url, tmp_path, ingest_settings=settings) as m:
        scp = m.ingest_app.dicom_scp
        assert scp is not None
        started = time.time_ns()
        runs = await asyncio.gather(
            storescu(scp.port, good, "MODALITY1"),
            storescu(scp.port, blocked, "MODALITY2", "CORRMESH_IN", "--no-halt", "-v"),
        )
        assert runs[0].returncode == 0, runs[0].output
        assert runs[1].output.count("Refused: OutOfResources") == len(blocked), runs[1].output
        events = await all_events(IngestServiceStub(m.ingest))
        associations = {e.dicom.calling_ae_title: e.correlation_id for e in events}

        # Both associations, by time: storing (with fsync) is the slowest stage, and
        # the blocked study's four failures are a quarter of all steps.
        window = event_pb2.TimeRange()
        window.start_time.FromNanoseconds(started)
        window.end_time.FromNanoseconds(time.time_ns() + 1)
        overall = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(time_range=window)
        )
        assert _counts(overall) == {"RECEIVED": (8, 0), "STORED": (8, 4)}
        assert overall.bottleneck_stage == "STORED"
        assert (overall.total_count, overall.success_rate, overall.failure_rate) == (16, 0.75, 0.25)

        failing = associations["MODALITY2"]
        session = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(correlation_id=failing)
        )
        assert _counts(session) == {"RECEIVED": (4, 0), "STORED": (4, 4)}
        assert session.failure_rate == 0.5

        timeline = await m.correlation.GetTimeline(
            correlation_pb2.GetTimelineRequest(correlation_id=failing)
        )
        steps = list(timeline.steps)
        starts = [s.started_at.ToNanoseconds() for s in steps]
        assert starts == sorted(starts) and len(steps) == 8
        # Each instance is received, then not stored, before the next one arrives.
        assert [(s.stage, s.outcome) for s in steps] == [
            ("RECEIVED", SUCCEEDED),
            ("STORED", FAILED),
        ] * 4
        for step in steps:
            assert step.service == "dicom-scp/CORRMESH_IN"
            assert step.duration.ToNanoseconds() == (
                step.completed_at.ToNanoseconds() - step.started_at.ToNanoseconds()
            )
            assert not [
                part for name in PATIENT_NAMES for part in name.split("^") if part in step.title
            ]
        assert all("NotADirectoryError" in s.title for s in steps if s.outcome == FAILED)

        # The group the failures fall into analyses its members' associations.
        await m.consumed(max(e.sequence for e in events))
        first_failure = next(s.event_id for s in steps if s.outcome == FAILED)
        group = (
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id=first_failure)
            )
        ).group
        members = {member.correlation_id for member in group.members}
        assert failing in members
        by_group = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(group_id=group.group_id)
        )
        assert _counts(by_group)["STORED"][1] == 4
        assert by_group.total_count == 8 * len(members)


def _counts(response: correlation_pb2.AnalyzePerformanceResponse) -> dict[str, tuple[int, int]]:
    return {s.stage: (s.count, s.failure_count) for s in response.stages}


async def test_storescu_associations_of_one_exam_share_batch_and_patient_and_failures_alert(
    database_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "dicom"
    exam = write_study(tmp_path / "exam", f"{ROOT}.3", 4, "PID-D", PATIENT_NAMES[0])
    blocked = write_study(tmp_path / "blocked", f"{ROOT}.4", 4, "PID-E", PATIENT_NAMES[1])
    store.mkdir()
    (store / f"{ROOT}.4").write_text("not a folder")
    settings = {"ingest_dicom_port": 0, "var_dir": tmp_path, "ingest_dicom_store_dir": str(store)}
    async with mesh(database_url, tmp_path, ingest_settings=settings) as m:
        await m.correlation.UpdateConfig(
            correlation_pb2.UpdateConfigRequest(
                config=correlation_pb2.CorrelationConfig(
                    dicom_alerts=correlation_pb2.DicomAlertConfig(
                        error_rate_threshold=0.5,
                        error_min_count=3,
                        error_window=duration_pb2.Duration(seconds=300),
                    )
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["dicom_alerts"]),
            )
        )
        scp = m.ingest_app.dicom_scp
        assert scp is not None
        # One exam in two associations at once (two senders), and a study that cannot be stored.
        runs = await asyncio.gather(
            storescu(scp.port, exam[:2], "MODALITY1"),
            storescu(scp.port, exam[2:], "MODALITY3"),
            storescu(scp.port, blocked, "MODALITY2", "CORRMESH_IN", "--no-halt"),
        )
        assert runs[0].returncode == 0 and runs[1].returncode == 0, runs
        events = await all_events(IngestServiceStub(m.ingest))
        await m.consumed(max(e.sequence for e in events))
        sessions = {e.dicom.calling_ae_title: e.correlation_id for e in events}

        batches = (
            await m.correlation.ListGroups(
                correlation_pb2.ListGroupsRequest(types=[correlation_pb2.GROUP_TYPE_BATCH])
            )
        ).groups
        patients = (
            await m.correlation.ListGroups(
                correlation_pb2.ListGroupsRequest(types=[correlation_pb2.GROUP_TYPE_PATIENT])
            )
        ).groups
        by_exam = {b.metadata["exam"]: b for b in batches}
        assert set(by_exam) == {"accession ACC3", "accession ACC4"}
        shared = (
            await m.correlation.GetGroup(
                correlation_pb2.GetGroupRequest(group_id=by_exam["accession ACC3"].group_id)
            )
        ).group
        assert {x.correlation_id for x in shared.members} == {
            sessions["MODALITY1"],
            sessions["MODALITY3"],
        }
        assert shared.member_count == 8  # 4 instances, received and stored
        assert len(patients) == 2
        (exam_patient,) = [p for p in patients if p.group_id == shared.metadata["patient_group_id"]]
        assert exam_patient.member_count == 8

        updates, _ = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(),
            lambda seen, _t: any(u.type == correlation_pb2.GROUP_UPDATE_TYPE_ALERT for u in seen),
        )
        (alert, *more) = [u for u in updates if u.type == correlation_pb2.GROUP_UPDATE_TYPE_ALERT]
        assert alert.alert.startswith("STORED failures from MODALITY2: 3 of 3 step(s) (100%)")
        told = [alert.group.group_id, *(u.group.group_id for u in more)]
        assert len(told) == len(set(told))
        assert by_exam["accession ACC4"].group_id in told
        shown = [*(g.title for g in (*batches, *patients)), *(u.alert for u in updates)]
        for text in shown:
            assert "PID-" not in text
            assert not [part for part in NAME_PARTS if part in text]
