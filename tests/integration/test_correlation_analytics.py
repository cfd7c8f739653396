"""GetTimeline and AnalyzePerformance over the real Ingest log, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from corrmesh.correlation import ingest_reader
from corrmesh.correlation.ingest_reader import IngestReader, TooManyEventsError
from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_mesh import Mesh, mesh, poll
from tests.support.processing_steps import (
    BASE_NS,
    FORWARDED,
    MS,
    RECEIVED,
    STORED,
    association,
    processing_step,
)

pytestmark = pytest.mark.timeout(120)

A = association("assoc-a", "MODALITY1")
B = association("assoc-b", "MODALITY2")
SOP = "1.2.826.0.1.3680043.10.1201.77.1."
FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
SUCCEEDED = event_pb2.PROCESSING_OUTCOME_SUCCEEDED


def _two_associations() -> list[event_pb2.Event]:
    """A: two instances, the second not stored after a slow attempt; B: stored and forwarded.

    Published out of order: the timeline orders by start time, not by arrival.
    """
    return [
        processing_step(A, STORED, 68, 120, sop=SOP + "2", error="NotADirectoryError"),
        processing_step(A, RECEIVED, 0, 4, sop=SOP + "1"),
        processing_step(B, RECEIVED, 10, 2, sop=SOP + "3"),
        processing_step(A, STORED, 4, 60, sop=SOP + "1"),
        processing_step(B, STORED, 12, 8, sop=SOP + "3"),
        processing_step(A, RECEIVED, 64, 4, sop=SOP + "2"),
        processing_step(B, FORWARDED, 20, 30, sop=SOP + "3"),
    ]


def _window(start_ms: int, end_ms: int) -> event_pb2.TimeRange:
    window = event_pb2.TimeRange()
    window.start_time.FromNanoseconds(BASE_NS + start_ms * MS)
    window.end_time.FromNanoseconds(BASE_NS + end_ms * MS)
    return window


def _figures(response: correlation_pb2.AnalyzePerformanceResponse) -> dict[str, tuple[int, ...]]:
    """stage → (count, failures, average ms, max ms)."""
    return {
        s.stage: (
            s.count,
            s.failure_count,
            round(s.average.ToNanoseconds() / MS),
            round(s.maximum.ToNanoseconds() / MS),
        )
        for s in response.stages
    }


async def test_timeline_and_performance_of_published_steps(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        sequences = await m.publish(*_two_associations())

        timeline = await m.correlation.GetTimeline(
            correlation_pb2.GetTimelineRequest(correlation_id="assoc-a")
        )
        assert [(s.stage, s.outcome, s.duration.ToNanoseconds() // MS) for s in timeline.steps] == [
            ("RECEIVED", SUCCEEDED, 4),
            ("STORED", SUCCEEDED, 60),
            ("RECEIVED", SUCCEEDED, 4),
            ("STORED", FAILED, 120),
        ]
        assert {s.service for s in timeline.steps} == {"dicom-scp/CORRMESH_IN"}
        assert {s.correlation_id for s in timeline.steps} == {"assoc-a"}
        assert timeline.steps[3].started_at.ToNanoseconds() == BASE_NS + 68 * MS
        assert timeline.steps[3].completed_at.ToNanoseconds() == BASE_NS + 188 * MS
        assert "NotADirectoryError" in timeline.steps[3].title

        one = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(correlation_id="assoc-a")
        )
        assert _figures(one) == {"RECEIVED": (2, 0, 4, 4), "STORED": (2, 1, 90, 120)}
        assert one.bottleneck_stage == "STORED"
        assert (one.total_count, one.failure_rate, one.success_rate) == (4, 0.25, 0.75)

        both = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(time_range=_window(0, 1000))
        )
        assert _figures(both) == {
            "RECEIVED": (3, 0, 3, 4),
            "STORED": (3, 1, 63, 120),
            "FORWARDED": (1, 0, 30, 30),
        }
        assert both.bottleneck_stage == "STORED"
        assert both.total_count == 7
        assert both.failure_rate == pytest.approx(1 / 7)
        # occurred_at is completed_at; the range is half-open [start, end).
        early = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(time_range=_window(0, 50))
        )
        assert _figures(early) == {"RECEIVED": (2, 0, 3, 4), "STORED": (1, 0, 8, 8)}

        # A group's timeline is every event of its members' correlation ids.
        await m.consumed(max(sequences))
        group = await _group_of(m, timeline.steps[3].event_id)
        members = {member.correlation_id for member in group.members}
        assert "assoc-a" in members
        by_group = await m.correlation.GetTimeline(
            correlation_pb2.GetTimelineRequest(group_id=group.group_id)
        )
        assert {s.correlation_id for s in by_group.steps} == members
        assert [s for s in by_group.steps if s.correlation_id == "assoc-a"] == list(timeline.steps)
        group_figures = await m.correlation.AnalyzePerformance(
            correlation_pb2.AnalyzePerformanceRequest(group_id=group.group_id)
        )
        assert group_figures.total_count == len(by_group.steps)


async def _group_of(m: Mesh, event_id: str) -> correlation_pb2.Group:
    found: list[correlation_pb2.Group] = []
    request = correlation_pb2.GetGroupForEventRequest(event_id=event_id)

    async def grouped() -> bool:
        try:
            found.append((await m.correlation.GetGroupForEvent(request)).group)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return False
        return True

    await poll(grouped)
    return found[-1]


async def _status(call: object) -> tuple[grpc.StatusCode, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), bad_request_fields(caught.value)


async def test_bad_input_unknown_targets_limits_and_ingest_down(
    database_url: str, tmp_path: Path
) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    timeline = correlation_pb2.GetTimelineRequest
    analyze = correlation_pb2.AnalyzePerformanceRequest
    async with mesh(database_url, tmp_path) as m:
        c = m.correlation
        assert await _status(c.GetTimeline(timeline())) == (invalid, ["target"])
        assert await _status(c.AnalyzePerformance(analyze())) == (invalid, ["target"])
        assert await _status(c.GetTimeline(timeline(group_id=""))) == (invalid, ["group_id"])
        backwards = _window(1000, 0)
        assert await _status(c.AnalyzePerformance(analyze(time_range=backwards))) == (
            invalid,
            ["time_range.end_time"],
        )
        half = event_pb2.TimeRange(start_time=timestamp_pb2.Timestamp(seconds=1))
        assert await _status(c.AnalyzePerformance(analyze(time_range=half))) == (
            invalid,
            ["time_range.end_time"],
        )
        assert await _status(c.GetTimeline(timeline(group_id="no-such-group"))) == (
            grpc.StatusCode.NOT_FOUND,
            [],
        )
        assert await _status(c.AnalyzePerformance(analyze(group_id="no-such-group"))) == (
            grpc.StatusCode.NOT_FOUND,
            [],
        )
        # Ids are free-form: one nobody used has no steps.
        empty = await c.GetTimeline(timeline(correlation_id="never-seen"))
        assert list(empty.steps) == []
        nothing = await c.AnalyzePerformance(analyze(correlation_id="never-seen"))
        assert nothing == correlation_pb2.AnalyzePerformanceResponse()

        await m.publish(*_two_associations())
        servicer = m.app.servicer
        assert servicer is not None and servicer.ingest_events is not None
        servicer.ingest_events.max_events = 3
        assert await _status(c.GetTimeline(timeline(correlation_id="assoc-a"))) == (
            invalid,
            ["correlation_id"],
        )
        assert await _status(c.AnalyzePerformance(analyze(time_range=_window(0, 1000)))) == (
            invalid,
            ["time_range"],
        )
        three = await c.GetTimeline(timeline(correlation_id="assoc-b"))
        assert len(three.steps) == 3

        dead = open_channel(f"127.0.0.1:{_closed_port()}", traced=False)
        servicer.ingest_events = IngestReader(dead)
        try:
            code, _ = await _status(c.GetTimeline(timeline(correlation_id="assoc-a")))
            assert code == grpc.StatusCode.UNAVAILABLE
        finally:
            await dead.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_reader_pages_chunks_ids_and_stops_at_its_maximum(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mesh(database_url, tmp_path) as m:
        await m.publish(*_two_associations())
        reader = IngestReader(m.ingest, page_size=2)
        # Three ids over filters of at most two values: two reads, merged in log order.
        monkeypatch.setattr(ingest_reader, "MAX_FILTER_VALUES", 2)
        events = await reader.for_correlations(["assoc-b", "nobody", "assoc-a"])
        assert len(events) == 7
        sequences = [e.sequence for e in events]
        assert sequences == sorted(sequences)
        assert await reader.for_correlations([]) == []

        ranged = await reader.in_range(
            _window(0, 50).start_time, _window(0, 50).end_time, [event_pb2.DOMAIN_DICOM]
        )
        assert len(ranged) == 3

        reader.max_events = 6
        with pytest.raises(TooManyEventsError, match="more than 6 events"):
            await reader.for_correlations(["assoc-a", "assoc-b"])
        reader.max_events = 7
        assert len(await reader.for_correlations(["assoc-a", "assoc-b"])) == 7
