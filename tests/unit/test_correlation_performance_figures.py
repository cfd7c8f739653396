"""Timeline steps and per-stage performance computed from events, with exact figures."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from corrmesh.correlation import analytics
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import event
from tests.support.processing_steps import (
    BASE_NS,
    FORWARDED,
    MS,
    RECEIVED,
    STORED,
    association,
    processing_step,
)

A = association("assoc-a")
FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
SUCCEEDED = event_pb2.PROCESSING_OUTCOME_SUCCEEDED


def test_timeline_orders_by_start_then_sequence_and_files_failures_under_their_stage() -> None:
    kubernetes = event(0.050, type="BackOff", source="kubernetes/prod", sequence=9)
    untyped = event(0.050, source="pager", sequence=3)
    events = [
        processing_step(A, STORED, 4, 120, error="NotADirectoryError", sequence=2),
        processing_step(A, RECEIVED, 0, 4, sequence=1),
        kubernetes,
        untyped,
    ]

    steps = analytics.timeline_steps(events)

    assert [(s.stage, s.outcome) for s in steps] == [
        ("RECEIVED", SUCCEEDED),
        ("STORED", FAILED),
        # Same instant: the lower sequence first.
        ("EVENT", event_pb2.PROCESSING_OUTCOME_UNSPECIFIED),
        ("BackOff", event_pb2.PROCESSING_OUTCOME_UNSPECIFIED),
    ]
    assert [s.duration_ns for s in steps] == [4 * MS, 120 * MS, 0, 0]
    assert steps[0].service == "dicom-scp/CORRMESH_IN"
    assert steps[2].service == "pager" and steps[3].service == "kubernetes/prod"
    assert steps[1].started_ns == BASE_NS + 4 * MS
    assert steps[1].correlation_id == "assoc-a"
    assert "not stored: NotADirectoryError" in steps[1].title

    message = analytics.timeline_message(steps)
    failed = message.steps[1]
    assert failed.stage == "STORED" and failed.outcome == FAILED
    assert failed.duration.ToNanoseconds() == 120 * MS
    assert failed.completed_at.ToNanoseconds() == BASE_NS + 124 * MS
    assert message.steps[3].started_at == kubernetes.occurred_at
    assert message.steps[3].duration.ToNanoseconds() == 0


def test_step_in_progress_has_no_duration_and_counts_as_neither_outcome() -> None:
    running = processing_step(A, STORED, 10, 0)
    running.dicom.outcome = event_pb2.PROCESSING_OUTCOME_IN_PROGRESS
    running.dicom.ClearField("completed_at")

    step = analytics.step_of(running)
    found = analytics.analyze([step])
    message = analytics.timeline_message([step]).steps[0]

    assert step.duration_ns is None
    assert not message.HasField("completed_at") and not message.HasField("duration")
    assert [(f.stage, f.count, f.durations) for f in found.stages] == [("STORED", 1, [])]
    assert found.bottleneck_stage == ""
    assert (found.total_count, found.success_rate, found.failure_rate) == (1, 0.0, 0.0)


def test_performance_per_stage_with_exact_figures() -> None:
    events = [
        processing_step(A, RECEIVED, 0, 1),
        processing_step(A, RECEIVED, 10, 4),
        processing_step(A, RECEIVED, 20, 2),
        processing_step(A, RECEIVED, 30, 3),
        processing_step(A, STORED, 40, 10),
        processing_step(A, STORED, 60, 30, error="disk full"),
        processing_step(A, FORWARDED, 100, 5),
        # Not a processing step: no duration nor outcome to analyse.
        event(0.2, type="BackOff"),
    ]

    found = analytics.analyze(analytics.timeline_steps(events))
    response = analytics.performance_message(found)

    assert [s.stage for s in response.stages] == ["RECEIVED", "STORED", "FORWARDED"]
    received, stored, forwarded = response.stages
    assert (received.count, received.failure_count) == (4, 0)
    assert [
        d.ToNanoseconds()
        for d in (
            received.average,
            received.minimum,
            received.maximum,
            received.p50,
            received.p90,
            received.p99,
        )
    ] == [2_500_000, 1 * MS, 4 * MS, 2_500_000, 3_700_000, 3_970_000]
    assert (stored.count, stored.failure_count) == (2, 1)
    assert [d.ToNanoseconds() for d in (stored.average, stored.p50, stored.p90, stored.p99)] == [
        20 * MS,
        20 * MS,
        28 * MS,
        29_800_000,
    ]
    assert forwarded.p99.ToNanoseconds() == forwarded.minimum.ToNanoseconds() == 5 * MS
    assert response.bottleneck_stage == "STORED"
    assert response.total_count == 7
    assert response.success_rate == pytest.approx(6 / 7)
    assert response.failure_rate == pytest.approx(1 / 7)


def test_bottleneck_ties_go_to_the_earlier_stage_and_nothing_gives_zeros() -> None:
    tie = [processing_step(A, STORED, 0, 7), processing_step(A, RECEIVED, 10, 7)]
    assert analytics.analyze(analytics.timeline_steps(tie)).bottleneck_stage == "RECEIVED"

    empty = analytics.performance_message(analytics.analyze([]))
    assert empty == correlation_pb2.AnalyzePerformanceResponse()


def test_percentile_interpolates_between_ranks() -> None:
    assert analytics.percentile([], 0.5) == 0
    assert analytics.percentile([7], 0.99) == 7
    assert analytics.percentile([10, 20, 30, 40, 50], 0.5) == 30
    assert analytics.percentile([10, 20, 30, 40, 50], 0.9) == 46


def _range(start_seconds: int | None, end_seconds: int | None) -> event_pb2.TimeRange:
    window = event_pb2.TimeRange()
    if start_seconds is not None:
        window.start_time.CopyFrom(timestamp_pb2.Timestamp(seconds=start_seconds))
    if end_seconds is not None:
        window.end_time.CopyFrom(timestamp_pb2.Timestamp(seconds=end_seconds))
    return window


DAY = 24 * 3600
T0 = 1_790_000_000


@pytest.mark.parametrize(
    ("request_message", "fields"),
    [
        (correlation_pb2.GetTimelineRequest(), ["target"]),
        (correlation_pb2.GetTimelineRequest(correlation_id=""), ["correlation_id"]),
        (correlation_pb2.AnalyzePerformanceRequest(group_id=""), ["group_id"]),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(None, None)),
            ["time_range.start_time", "time_range.end_time"],
        ),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(T0, None)),
            ["time_range.end_time"],
        ),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(T0, T0)),
            ["time_range.end_time"],
        ),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(T0, T0 + 31 * DAY + 1)),
            ["time_range.end_time"],
        ),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(-70_000_000_000, T0)),
            ["time_range.start_time"],
        ),
    ],
)
def test_bad_targets_name_their_field(
    request_message: correlation_pb2.GetTimelineRequest | correlation_pb2.AnalyzePerformanceRequest,
    fields: list[str],
) -> None:
    violations = FieldViolations()
    assert analytics.validate_target(request_message, violations) is None
    assert [name for name, _ in violations.items] == fields


def test_good_targets() -> None:
    for request_message, target in (
        (correlation_pb2.GetTimelineRequest(group_id="g-1"), "group_id"),
        (correlation_pb2.AnalyzePerformanceRequest(correlation_id="c-1"), "correlation_id"),
        (
            correlation_pb2.AnalyzePerformanceRequest(time_range=_range(T0, T0 + 31 * DAY)),
            "time_range",
        ),
    ):
        violations = FieldViolations()
        assert analytics.validate_target(request_message, violations) == target
        assert not violations
