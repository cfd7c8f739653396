"""Ingest's C-STORE SCP with dcmtk's storescu as the sender, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import _config as pynetdicom_config

from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.dicom_peers import require_dicom_peers
from tests.support.ingest import (
    CALLING_AE,
    all_events,
    bundled_files,
    edge_server,
    send_c_store,
    storescu,
    write_study,
)

pytestmark = pytest.mark.timeout(120)

ROOT = "1.2.826.0.1.3680043.10.1201.7"
RECEIVED = event_pb2.PROCESSING_STAGE_RECEIVED
STORED = event_pb2.PROCESSING_STAGE_STORED
FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
SUCCEEDED = event_pb2.PROCESSING_OUTCOME_SUCCEEDED


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    require_dicom_peers()


def _phi(paths: list[Path]) -> set[str]:
    """Patient names and birth dates in ``paths``: none may appear anywhere we write."""
    values: set[str] = set()
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientBirthDate"):
            value = str(ds.get(keyword, "") or "")
            values.update(part for part in value.split("^") if len(part) > 3)
    return values


def _by_association(events: list[event_pb2.Event]) -> dict[str, list[event_pb2.Event]]:
    groups: dict[str, list[event_pb2.Event]] = defaultdict(list)
    for event in events:
        groups[event.correlation_id].append(event)
    return groups


async def test_parallel_associations_become_durable_steps(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    senders = {
        "MODALITY1": bundled_files("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"),
        "MODALITY2": write_study(tmp_path / "a", f"{ROOT}.1", 12, "PID-A", "Alpha^Anna", 3),
        "MODALITY3": write_study(tmp_path / "b", f"{ROOT}.2", 8, "PID-B", "Beta^Bernd", 2),
    }
    async with edge_server(database_url, tmp_path) as (app, stub):
        assert app.dicom_scp is not None
        runs = await asyncio.gather(
            *(storescu(app.dicom_scp.port, files, ae) for ae, files in senders.items())
        )
        assert all(run.returncode == 0 for run in runs), [run.output for run in runs]
        events = await all_events(stub)

    groups = _by_association(events)
    assert len(groups) == 3
    for correlation_id, group in groups.items():
        calling = {e.dicom.calling_ae_title for e in group}
        assert len(calling) == 1
        files = senders[calling.pop()]
        expected = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
        for stage in (RECEIVED, STORED):
            steps = [e for e in group if e.dicom.stage == stage]
            assert {e.dicom.sop_instance_uid for e in steps} == expected
            assert all(e.dicom.outcome == SUCCEEDED for e in steps)
        for event in group:
            step = event.dicom
            assert event.domain == event_pb2.DOMAIN_DICOM
            assert step.association_id == correlation_id == event.attributes["association_id"]
            assert step.called_ae_title == "CORRMESH_IN" and step.source_ip == "127.0.0.1"
            assert step.study_instance_uid and step.series_instance_uid and step.sop_class_uid
            assert step.started_at.ToNanoseconds() <= step.completed_at.ToNanoseconds()
            assert event.fingerprint == f"dicom/{step.calling_ae_title}/{event.type}"
            assert event.attributes["patient_id"] == step.patient_id
            # Each instance's received step precedes its stored step in the log.
        order = {(e.dicom.sop_instance_uid, e.dicom.stage): e.sequence for e in group}
        assert all(order[(uid, RECEIVED)] < order[(uid, STORED)] for uid in expected)

    by_patient = {e.dicom.patient_id for e in events}
    assert {"PID-A", "PID-B"} <= by_patient
    # Every instance is on disk, filed by study/series/instance.
    stored = [e.dicom for e in events if e.dicom.stage == STORED]
    for step in stored:
        path = tmp_path / "dicom" / step.study_instance_uid / step.series_instance_uid
        assert (path / f"{step.sop_instance_uid}.dcm").exists()
    files = [p for group_files in senders.values() for p in group_files]
    phi = _phi(files)
    assert phi
    text = "".join(str(e) for e in events) + caplog.text
    assert not [value for value in phi if value in text]


async def test_storage_failure_is_a_failed_stored_step(database_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination folder should be")
    files = write_study(tmp_path / "s", f"{ROOT}.3", 3, "PID-C", "Gamma^Gina")
    async with edge_server(
        database_url, tmp_path, ingest_dicom_store_dir=str(blocker / "dicom")
    ) as (app, stub):
        assert app.dicom_scp is not None
        run = await storescu(
            app.dicom_scp.port, files, CALLING_AE, "CORRMESH_IN", "--no-halt", "-v"
        )
        events = await all_events(stub)

    assert run.output.count("Received Store Response (Refused: OutOfResources)") == 3
    failed = [e for e in events if e.dicom.outcome == FAILED]
    assert len(failed) == 3 and len(events) == 6
    for event in failed:
        assert event.type == "FAILED" and event.severity == event_pb2.SEVERITY_ERROR
        assert event.dicom.stage == STORED and event.dicom.failed_stage == STORED
        assert "NotADirectoryError" in event.dicom.error_message
        assert event.fingerprint == f"dicom/{CALLING_AE}/FAILED"
    received = [e for e in events if e.dicom.stage == RECEIVED]
    assert all(e.dicom.outcome == SUCCEEDED for e in received)


def _raw_file(path: Path, sop_uid: str, body: bytes, syntax: str = ExplicitVRLittleEndian) -> Path:
    """A Part 10 file with valid meta information and ``body`` as its data set."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(syntax)
    with path.open("wb") as handle:
        handle.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(handle, meta, enforce_standard=True)  # type: ignore[arg-type]
        handle.write(body)
    return path


async def test_malformed_data_and_unknown_ae_are_refused_and_scp_keeps_serving(
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Send files byte for byte instead of decoding (and refusing) them first.
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    good = bundled_files("CT_small.dcm")
    # Said to be deflated, but not a deflate stream at all.
    garbage = _raw_file(
        tmp_path / "garbage.dcm", f"{ROOT}.9.1", b"not deflated" * 4, DeflatedExplicitVRLittleEndian
    )
    # Decodes, but has no UIDs to file it under (PatientID only).
    no_uids = _raw_file(tmp_path / "no-uids.dcm", f"{ROOT}.9.2", b"\x10\x00\x20\x00LO\x04\x00P123")
    async with edge_server(
        database_url, tmp_path, ingest_dicom_allowed_aes="MODALITY1, MODALITY2"
    ) as (app, stub):
        assert app.dicom_scp is not None
        port = app.dicom_scp.port
        intruder = await storescu(port, good, "INTRUDER")
        wrong_called = await storescu(port, good, "MODALITY1", "SOMEONE_ELSE")
        syntaxes = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
        statuses = await asyncio.gather(
            asyncio.to_thread(send_c_store, port, garbage, syntaxes),
            asyncio.to_thread(send_c_store, port, no_uids, syntaxes),
        )
        after = await storescu(port, good, "MODALITY2")
        events = await all_events(stub)

    assert intruder.returncode != 0 and "reject" in intruder.output.lower()
    assert wrong_called.returncode != 0 and "reject" in wrong_called.output.lower()
    assert list(statuses) == [0xC210, 0xA900]
    assert after.returncode == 0
    refused = [e for e in events if e.dicom.outcome == FAILED]
    assert sorted(e.dicom.sop_instance_uid for e in refused) == [f"{ROOT}.9.1", f"{ROOT}.9.2"]
    assert all(e.dicom.failed_stage == RECEIVED for e in refused)
    assert {e.dicom.calling_ae_title for e in events} == {"MODALITY1", "MODALITY2"}
    stored = [e for e in events if e.dicom.stage == STORED]
    assert [e.dicom.calling_ae_title for e in stored] == ["MODALITY2"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("dicom association rejected") == 2
    assert messages.count("dicom instance refused") == 2
    rejected = [r for r in caplog.records if r.getMessage() == "dicom association rejected"]
    assert {getattr(r, "calling_ae_title", "") for r in rejected} == {"INTRUDER", "MODALITY1"}
    phi = _phi(good)
    assert phi and not [v for v in phi if v in caplog.text or v in str(events)]


async def test_listed_sop_classes_only(database_url: str, tmp_path: Path) -> None:
    ct, mr = bundled_files("CT_small.dcm", "MR_small.dcm")
    async with edge_server(database_url, tmp_path, ingest_dicom_sop_classes="CTImageStorage") as (
        app,
        stub,
    ):
        assert app.dicom_scp is not None
        await storescu(app.dicom_scp.port, [ct, mr], CALLING_AE, "CORRMESH_IN", "--no-halt")
        events = await all_events(
            stub, ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM], types=["STORED"])
        )
    assert [e.dicom.modality for e in events] == ["CT"]
