"""Stored instances forwarded by C-STORE to a PACS (dcmtk's storescp), and forward failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corrmesh.cli.mesh import free_port
from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.dicom_peers import Sink, _sink, require_dicom_peers
from tests.support.ingest import all_events, edge_server, storescu, write_study

pytestmark = pytest.mark.timeout(120)

ROOT = "1.2.826.0.1.3680043.10.1201.8"
FORWARDED = event_pb2.PROCESSING_STAGE_FORWARDED


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Sink]:
    """storescp as the PACS the edge forwards to."""
    require_dicom_peers()
    sink = _sink(tmp_path / "pacs", "PACS", free_port())
    sink.process.start()
    try:
        yield sink
    finally:
        sink.process.stop()


async def _forward_steps(stub: object, count: int, timeout: float = 30.0) -> list[event_pb2.Event]:
    """Waits until ``count`` forward steps (done or failed) are in the log."""
    deadline = time.monotonic() + timeout
    only = ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM])
    while True:
        steps = [e for e in await all_events(stub, only) if e.dicom.stage == FORWARDED]  # type: ignore[arg-type]
        if len(steps) >= count or time.monotonic() > deadline:
            return steps
        await asyncio.sleep(0.05)


async def test_stored_instances_reach_the_pacs(
    database_url: str, tmp_path: Path, pacs: Sink
) -> None:
    files = write_study(tmp_path / "s", f"{ROOT}.1", 6, "PID-F", "Delta^Dora", 2)
    forward = f"{pacs.ae_title}@127.0.0.1:{pacs.port}"
    async with edge_server(database_url, tmp_path, ingest_dicom_forward=forward) as (app, stub):
        assert app.dicom_scp is not None
        run = await storescu(app.dicom_scp.port, files)
        assert run.returncode == 0, run.output
        forwarded = await _forward_steps(stub, len(files))
        events = await all_events(stub)

    expected = {f"{ROOT}.1.{n % 2 + 1}.{n + 1}" for n in range(6)}
    assert pacs.received() == expected
    assert {e.dicom.sop_instance_uid for e in forwarded} == expected
    received = {e.correlation_id for e in events if e.type == "RECEIVED"}
    assert len(received) == 1 and {e.correlation_id for e in forwarded} == received
    for event in forwarded:
        assert event.type == "FORWARDED"
        assert event.dicom.outcome == event_pb2.PROCESSING_OUTCOME_SUCCEEDED
        assert event.dicom.started_at.ToNanoseconds() <= event.dicom.completed_at.ToNanoseconds()
        # Forwarding happens behind the C-STORE response: after the stored step.
        stored = next(
            e
            for e in events
            if e.type == "STORED" and e.dicom.sop_instance_uid == event.dicom.sop_instance_uid
        )
        assert event.sequence > stored.sequence


async def test_unreachable_pacs_is_a_failed_forward_step(database_url: str, tmp_path: Path) -> None:
    require_dicom_peers()
    files = write_study(tmp_path / "s", f"{ROOT}.2", 3, "PID-G", "Epsilon^Emil")
    forward = f"GONE@127.0.0.1:{free_port()}"
    async with edge_server(database_url, tmp_path, ingest_dicom_forward=forward) as (app, stub):
        assert app.dicom_scp is not None
        run = await storescu(app.dicom_scp.port, files)
        failed = await _forward_steps(stub, len(files))
        events = await all_events(stub)

    # The sender was told "stored": the local copy is kept whatever the PACS does.
    assert run.returncode == 0, run.output
    assert len([e for e in events if e.type == "STORED"]) == 3
    assert len(failed) == 3
    for event in failed:
        assert event.type == "FAILED" and event.severity == event_pb2.SEVERITY_ERROR
        assert event.dicom.outcome == event_pb2.PROCESSING_OUTCOME_FAILED
        assert event.dicom.failed_stage == FORWARDED
        assert "GONE" in event.dicom.error_message
