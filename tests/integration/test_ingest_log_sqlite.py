"""SQLite appends on the driver's connection: the same rows, the same answers, all or nothing."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from corrmesh.ingest.filters import filter_conditions
from corrmesh.ingest.log import EventLog
from corrmesh.runtime.db import create_db_engine
from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.ingest import make_event

_COLUMNS = (
    "sequence, event_id, correlation_id, domain, source, severity, cluster, namespace, type,"
    " occurred_at, typeof(occurred_at), typeof(ingested_at), typeof(payload)"
)


def _batches() -> list[list[event_pb2.Event]]:
    dicom = make_event(
        3.5,
        event_id="d1",
        correlation_id="assoc-1",
        domain=event_pb2.DOMAIN_DICOM,
        source="dicom-scp/CORRMESH_IN",
        dicom=event_pb2.DicomProcessingStep(stage=event_pb2.PROCESSING_STAGE_STORED),
    )
    dicom.occurred_at.nanos = 123_456_789  # finer than the column keeps
    return [
        [make_event(0, event_id="k1", correlation_id="c"), make_event(1, event_id="k2")],
        # A repeat of an id already stored, and one repeated inside the batch.
        [dicom, make_event(2, event_id="k1"), make_event(3, event_id="k3", title="ü")],
        [make_event(4, event_id="k3")],
    ]


async def _open(path: Path) -> EventLog:
    log = EventLog(create_db_engine(f"sqlite:///{path}"))
    await log.open()
    return log


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT {_COLUMNS} FROM events ORDER BY sequence").fetchall()


async def test_rows_and_results_match_what_sqlalchemy_writes(tmp_path: Path) -> None:
    fast = await _open(tmp_path / "fast.db")
    core = await _open(tmp_path / "core.db")
    core._sqlite = None  # the SQLAlchemy path PostgreSQL takes, as the reference
    try:
        fast_results = await fast.append(_batches(), frozenset({"d1"}))
        core_results = await core.append(_batches(), frozenset({"d1"}))
        assert fast_results == core_results
        assert [[r.duplicate for r in batch] for batch in fast_results] == [
            [False, False],
            [False, True, False],
            [True],
        ]
        assert _rows(tmp_path / "fast.db") == _rows(tmp_path / "core.db")
        with sqlite3.connect(tmp_path / "fast.db") as connection:
            stamps = connection.execute("SELECT ingested_at FROM events").fetchall()
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for (s,) in stamps)

        # Read back through the models: equal events, and time filters still work.
        fast_read = await asyncio.to_thread(fast.read_after, 0, 10)
        core_read = await asyncio.to_thread(core.read_after, 0, 10)
        for mine, theirs in zip(fast_read.items, core_read.items, strict=True):
            assert mine.ingested_at.seconds > 0
            mine.ClearField("ingested_at")
            theirs.ClearField("ingested_at")
            assert mine == theirs
        later = filter_conditions(
            ingest_pb2.EventFilter(occurred_after=fast_read.items[2].occurred_at)
        )
        fast_page, _ = await asyncio.to_thread(fast.list_page, 0, 10, later)
        core_page, _ = await asyncio.to_thread(core.list_page, 0, 10, later)
        assert [e.event_id for e in fast_page] == [e.event_id for e in core_page]
        assert fast.head == core.head == 4
    finally:
        fast.close()
        core.close()


async def test_a_failed_append_stores_nothing_and_the_next_one_goes_on(tmp_path: Path) -> None:
    log = await _open(tmp_path / "events.db")
    try:
        await log.append([[make_event(0, event_id="a")]])
        # Claimed new but already stored: the insert fails halfway through the batch.
        doomed = [make_event(1, event_id="b"), make_event(2, event_id="a")]
        with pytest.raises(sqlite3.IntegrityError):
            await log.append([doomed], frozenset({"a", "b"}))
        assert await asyncio.to_thread(log.read_head) == 1

        after = await log.append([[make_event(3, event_id="b")]])
        assert [r.sequence for r in after[0]] == [2]
        stored = await asyncio.to_thread(log.read_after, 0, 10)
        assert [e.event_id for e in stored.items] == ["a", "b"]
    finally:
        log.close()
