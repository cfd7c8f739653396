"""Edges acknowledge only what is durable: no C-STORE success, no HTTP 200 before the commit."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from corrmesh.ingest.log import Appended
from corrmesh.ingest.server import IngestApp
from corrmesh.ingest.webhooks import ALERTMANAGER_PATH
from corrmesh.v1 import event_pb2
from tests.support.dicom_peers import require_dicom_peers
from tests.support.ingest import CALLING_AE, all_events, edge_server, send_c_store, write_study

pytestmark = pytest.mark.timeout(120)

ROOT = "1.2.826.0.1.3680043.10.1201.8"
#: Long enough that an early answer would have arrived.
EARLY_ANSWER_SECONDS = 0.5


class HeldLog:
    """Wraps the log's append so a test can hold a commit open, or fail it."""

    def __init__(self, app: IngestApp) -> None:
        self._append = app.log.append_blocking
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_next = False
        app.log.append_blocking = self._held  # type: ignore[method-assign]

    def _held(
        self, batches: Sequence[Sequence[event_pb2.Event]], new_ids: Set[str] = frozenset()
    ) -> list[list[Appended]]:
        self.entered.set()
        assert self.release.wait(30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("disk full")
        return self._append(batches, new_ids)


@contextmanager
def held(app: IngestApp) -> Iterator[HeldLog]:
    hold = HeldLog(app)
    try:
        yield hold
    finally:
        hold.release.set()


async def test_c_store_is_answered_only_after_its_file_and_events_are_durable(
    database_url: str, tmp_path: Path
) -> None:
    require_dicom_peers()
    first, second = write_study(tmp_path / "s", f"{ROOT}.1", 2, "PID-D", "Delta^Dora")
    ids = dcmread(first, stop_before_pixels=True)
    stored = tmp_path / "dicom" / ids.StudyInstanceUID / ids.SeriesInstanceUID
    async with edge_server(database_url, tmp_path) as (app, stub):
        assert app.dicom_scp is not None
        port = app.dicom_scp.port
        with held(app) as hold:
            sending = asyncio.create_task(asyncio.to_thread(send_c_store, port, first))
            assert await asyncio.to_thread(hold.entered.wait, 30)
            # The commit is under way: the file is already in place, the
            # sender has no answer yet, and the log shows nothing.
            assert (stored / f"{ids.SOPInstanceUID}.dcm").exists()
            await asyncio.sleep(EARLY_ANSWER_SECONDS)
            assert not sending.done()
            assert await all_events(stub) == []
            hold.release.set()
            assert await sending == 0x0000
        steps = await all_events(stub)
        assert [e.dicom.stage for e in steps] == [
            event_pb2.PROCESSING_STAGE_RECEIVED,
            event_pb2.PROCESSING_STAGE_STORED,
        ]

        # A commit that fails is a refusal the sender can retry, not a success.
        with held(app) as hold:
            hold.fail_next = True
            hold.release.set()
            assert await asyncio.to_thread(send_c_store, port, second) == 0xA700
        assert len(await all_events(stub)) == 2
        assert await asyncio.to_thread(send_c_store, port, second) == 0x0000
        assert len(await all_events(stub)) == 4
    assert {e.attributes["calling_ae_title"] for e in steps} == {CALLING_AE}


def _alert(fingerprint: str) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "instance": "db-1", "severity": "critical"},
        "annotations": {"summary": "Disk is full."},
        "startsAt": "2026-11-21T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }
    payload = {"version": "4", "status": "firing", "receiver": "corrmesh", "alerts": [alert]}
    return json.dumps(payload).encode()


async def test_webhook_answers_only_after_the_commit(database_url: str, tmp_path: Path) -> None:
    async with edge_server(database_url, tmp_path) as (app, stub), httpx.AsyncClient() as client:
        assert app.webhooks is not None
        url = f"http://127.0.0.1:{app.webhooks.port}{ALERTMANAGER_PATH}"
        with held(app) as hold:
            posting = asyncio.create_task(client.post(url, content=_alert("aaaa")))
            assert await asyncio.to_thread(hold.entered.wait, 30)
            await asyncio.sleep(EARLY_ANSWER_SECONDS)
            assert not posting.done()
            assert await all_events(stub) == []
            hold.release.set()
            response = await posting
        assert response.status_code == 200
        stored = await all_events(stub)
        assert [e.event_id for e in stored] == response.json()["event_ids"]

        with held(app) as hold:
            hold.fail_next = True
            hold.release.set()
            refused = await client.post(url, content=_alert("bbbb"))
        assert refused.status_code == 503
        assert len(await all_events(stub)) == 1
