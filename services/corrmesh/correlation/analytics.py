"""Timelines and per-stage performance of processing, computed from Ingest's events.

Pure computation over a list of :class:`~corrmesh.v1.event_pb2.Event` (the
RPCs read them from Ingest, see :mod:`corrmesh.correlation.ingest_reader`):

* :func:`timeline_steps` turns every event into one step. An event with
  DICOM processing details (``DicomProcessingStep``) is a timed step of its
  stage; a step that failed is filed under the stage that failed
  (``failed_stage``), so an association reads received → stored(failed).
  Any other event is an instantaneous step at ``occurred_at`` whose stage is
  its ``type`` and whose outcome is unspecified (it reports none).
  Steps are ordered by start time, then by Ingest's sequence.
* :func:`analyze` summarises the processing steps (events with DICOM
  details only: other events carry no duration nor outcome) per stage:
  count, failures, average / minimum / maximum / p50 / p90 / p99 of
  ``completed_at - started_at``. Percentiles interpolate linearly between
  the closest ranks, so p50 of an even count is the mean of the middle two.
  The bottleneck is the stage with the highest average duration.
  ``success_rate`` and ``failure_rate`` are shares of all analysed steps
  (a step still in progress is neither).

Durations are kept in integer nanoseconds, as Timestamp and Duration hold them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf import duration_pb2, timestamp_pb2

from corrmesh.ingest.validation import valid_timestamp
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2

#: Longest time range one AnalyzePerformance call may cover.
MAX_RANGE_DAYS = 31
_MAX_RANGE_SECONDS = MAX_RANGE_DAYS * 24 * 3600
#: Stage of an event without details nor type.
UNTYPED_STAGE = "EVENT"
_STAGE_PREFIX = "PROCESSING_STAGE_"
_FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
_SUCCEEDED = event_pb2.PROCESSING_OUTCOME_SUCCEEDED
_UNSPECIFIED_OUTCOME = event_pb2.PROCESSING_OUTCOME_UNSPECIFIED


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a timeline; ``completed_ns`` is None while it is in progress."""

    event_id: str
    correlation_id: str
    service: str
    stage: str
    outcome: int
    started_ns: int
    completed_ns: int | None
    title: str
    sequence: int
    #: True for events with processing details, the only ones analysed.
    processing: bool

    @property
    def duration_ns(self) -> int | None:
        """completed - started; None when not completed (clamped at 0 for skewed clocks)."""
        if self.completed_ns is None:
            return None
        return max(0, self.completed_ns - self.started_ns)


def stage_name(stage: int) -> str:
    """The stage without its prefix ("STORED"); the number for a stage this build lacks."""
    try:
        return event_pb2.ProcessingStage.Name(stage).removeprefix(_STAGE_PREFIX)  # type: ignore[arg-type]
    except ValueError:
        return str(stage)


def _stage_order(name: str) -> tuple[int, str]:
    # Pipeline order for known stages (received, stored, forwarded, ...), then by name.
    try:
        return event_pb2.ProcessingStage.Value(_STAGE_PREFIX + name), name
    except ValueError:
        return len(event_pb2.ProcessingStage.keys()), name


def step_of(event: event_pb2.Event) -> Step:
    """The timeline step ``event`` records."""
    if event.HasField("dicom"):
        dicom = event.dicom
        failed = dicom.outcome == _FAILED
        stage = dicom.failed_stage if failed and dicom.failed_stage else dicom.stage
        started = dicom.started_at if dicom.HasField("started_at") else event.occurred_at
        completed = dicom.completed_at.ToNanoseconds() if dicom.HasField("completed_at") else None
        return Step(
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            service=event.source,
            stage=stage_name(stage),
            outcome=dicom.outcome,
            started_ns=started.ToNanoseconds(),
            completed_ns=completed,
            title=event.title,
            sequence=event.sequence,
            processing=True,
        )
    at = event.occurred_at.ToNanoseconds()
    return Step(
        event_id=event.event_id,
        correlation_id=event.correlation_id,
        service=event.source,
        stage=event.type or UNTYPED_STAGE,
        outcome=_UNSPECIFIED_OUTCOME,
        started_ns=at,
        completed_ns=at,
        title=event.title,
        sequence=event.sequence,
        processing=False,
    )


def timeline_steps(events: Iterable[event_pb2.Event]) -> list[Step]:
    """Every event as a step, ordered by start time, then sequence."""
    return sorted(map(step_of, events), key=lambda step: (step.started_ns, step.sequence))


def percentile(ordered: Sequence[int], fraction: float) -> int:
    """The ``fraction`` quantile of sorted ``ordered``, interpolated between ranks; 0 if empty."""
    if not ordered:
        return 0
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


@dataclass
class StageFigures:
    """Counts and durations (ns) of one stage."""

    stage: str
    count: int = 0
    failure_count: int = 0
    durations: list[int] = field(default_factory=list)

    @property
    def average_ns(self) -> int:
        return round(sum(self.durations) / len(self.durations)) if self.durations else 0


@dataclass
class Performance:
    """What :func:`analyze` finds."""

    stages: list[StageFigures]
    bottleneck_stage: str
    total_count: int
    success_count: int
    failure_count: int

    @property
    def success_rate(self) -> float:
        return self.success_count / self.total_count if self.total_count else 0.0

    @property
    def failure_rate(self) -> float:
        return self.failure_count / self.total_count if self.total_count else 0.0


def analyze(steps: Iterable[Step]) -> Performance:
    """Per-stage figures of the processing steps among ``steps``."""
    by_stage: dict[str, StageFigures] = {}
    success = failure = 0
    for step in steps:
        if not step.processing:
            continue
        figures = by_stage.setdefault(step.stage, StageFigures(step.stage))
        figures.count += 1
        if step.outcome == _FAILED:
            figures.failure_count += 1
            failure += 1
        elif step.outcome == _SUCCEEDED:
            success += 1
        if (duration := step.duration_ns) is not None:
            figures.durations.append(duration)
    stages = sorted(by_stage.values(), key=lambda figures: _stage_order(figures.stage))
    for figures in stages:
        figures.durations.sort()
    timed = [figures for figures in stages if figures.durations]
    # max() keeps the first of equals: ties go to the earlier stage of the pipeline.
    bottleneck = max(timed, key=lambda figures: figures.average_ns).stage if timed else ""
    total = sum(figures.count for figures in stages)
    return Performance(stages, bottleneck, total, success, failure)


# -- messages -------------------------------------------------------------------


def _duration(nanoseconds: int) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(nanoseconds)
    return value


def _timestamp(nanoseconds: int) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromNanoseconds(nanoseconds)
    return value


def timeline_message(steps: Iterable[Step]) -> correlation_pb2.GetTimelineResponse:
    """GetTimeline's answer; a step in progress has neither completed_at nor duration."""
    response = correlation_pb2.GetTimelineResponse()
    for step in steps:
        message = response.steps.add(
            event_id=step.event_id,
            correlation_id=step.correlation_id,
            service=step.service,
            stage=step.stage,
            outcome=step.outcome,  # type: ignore[arg-type]
            started_at=_timestamp(step.started_ns),
            title=step.title,
        )
        if step.completed_ns is not None:
            message.completed_at.CopyFrom(_timestamp(step.completed_ns))
        if (duration := step.duration_ns) is not None:
            message.duration.CopyFrom(_duration(duration))
    return response


def performance_message(found: Performance) -> correlation_pb2.AnalyzePerformanceResponse:
    """AnalyzePerformance's answer."""
    return correlation_pb2.AnalyzePerformanceResponse(
        stages=[
            correlation_pb2.StagePerformance(
                stage=figures.stage,
                count=figures.count,
                failure_count=figures.failure_count,
                average=_duration(figures.average_ns),
                minimum=_duration(figures.durations[0] if figures.durations else 0),
                maximum=_duration(figures.durations[-1] if figures.durations else 0),
                p50=_duration(percentile(figures.durations, 0.5)),
                p90=_duration(percentile(figures.durations, 0.9)),
                p99=_duration(percentile(figures.durations, 0.99)),
            )
            for figures in found.stages
        ],
        bottleneck_stage=found.bottleneck_stage,
        total_count=found.total_count,
        success_rate=found.success_rate,
        failure_rate=found.failure_rate,
    )


def timeline_response(events: Iterable[event_pb2.Event]) -> correlation_pb2.GetTimelineResponse:
    """GetTimeline's answer for ``events``."""
    return timeline_message(timeline_steps(events))


def performance_response(
    events: Iterable[event_pb2.Event],
) -> correlation_pb2.AnalyzePerformanceResponse:
    """AnalyzePerformance's answer for ``events``."""
    return performance_message(analyze(timeline_steps(events)))


# -- requests -------------------------------------------------------------------


def validate_target(
    request: correlation_pb2.GetTimelineRequest | correlation_pb2.AnalyzePerformanceRequest,
    violations: FieldViolations,
) -> str | None:
    """Which target a GetTimeline/AnalyzePerformance request names, or None (a violation).

    ``correlation_id`` and ``group_id`` must not be empty; a ``time_range``
    needs both ends, start before end and at most :data:`MAX_RANGE_DAYS` days.
    """
    target = request.WhichOneof("target")
    if target is None:
        names = " or ".join(f.name for f in request.DESCRIPTOR.oneofs_by_name["target"].fields)
        violations.add("target", f"set one of {names}")
        return None
    if isinstance(request, correlation_pb2.AnalyzePerformanceRequest) and target == "time_range":
        return target if _validate_range(request.time_range, violations.nested(target)) else None
    if not getattr(request, target):
        violations.add(target, "must not be empty")
        return None
    return target


def _validate_range(window: event_pb2.TimeRange, violations: FieldViolations) -> bool:
    before = len(violations.items)
    for end in ("start_time", "end_time"):
        if not window.HasField(end):
            violations.add(end, "is required")
        elif not valid_timestamp(getattr(window, end)):
            violations.add(end, "must be a valid timestamp")
    if len(violations.items) > before:
        return False
    length_ns = window.end_time.ToNanoseconds() - window.start_time.ToNanoseconds()
    if length_ns <= 0:
        violations.add("end_time", "must be after start_time")
    elif length_ns > _MAX_RANGE_SECONDS * 1_000_000_000:
        violations.add("end_time", f"must be at most {MAX_RANGE_DAYS} days after start_time")
    return len(violations.items) == before


def correlation_ids_of(group: correlation_pb2.Group) -> list[str]:
    """The distinct correlation ids of ``group``'s members, in member order."""
    return list(dict.fromkeys(m.correlation_id for m in group.members if m.correlation_id))
