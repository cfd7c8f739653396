"""Accepting a batch of events: validate, assign ids, stamp trace context, commit.

Shared by Publish and PublishStream and by the edge adapters. The work is
split in two so a stream can pipeline: :meth:`Publisher.prepare` validates
and hands the accepted events to the writer without waiting for the commit,
and :meth:`Publisher.finish` awaits the commit and builds the per-event
results. Edge threads use :meth:`Publisher.publish_blocking`, the same steps
without the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence, Set
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter

from corrmesh.ingest.log import Appended
from corrmesh.ingest.validation import MAX_ID_CHARS, validate_event
from corrmesh.ingest.writer import GroupCommitWriter
from corrmesh.runtime.errors import FieldViolations
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, TraceContextStamps
from corrmesh.v1 import event_pb2, ingest_pb2

EVENTS_ACCEPTED_ATTRIBUTE = "corrmesh.events_accepted"
METER_NAME = "corrmesh.ingest"
#: Batches up to this size are checked on the event loop; larger ones in a
#: worker thread (a thread hop costs about as much as checking this many).
INLINE_CHECK_LIMIT = 64


@dataclass
class Prepared:
    """One batch on its way into the log."""

    #: One result per event, at its index; rejected ones already carry their error.
    results: list[ingest_pb2.PublishResult]
    #: Indexes of the accepted events, in the order they were submitted.
    accepted: list[int]
    commit: asyncio.Future[list[Appended]]


@dataclass
class _Checked:
    """What validation made of one batch."""

    results: list[ingest_pb2.PublishResult]
    accepted: list[int]
    to_commit: list[event_pb2.Event]
    #: Ids assigned here (fresh UUIDs), which cannot be duplicates in the log.
    new_ids: Set[str]


@dataclass
class Outcome:
    """The answer for one batch, as Publish and PublishStream return it."""

    results: list[ingest_pb2.PublishResult]
    accepted_count: int
    rejected_count: int
    #: Newly stored events (accepted minus duplicates).
    stored_count: int
    correlation_ids: set[str]


def _check(events: Sequence[event_pb2.Event]) -> _Checked:
    """Validates and completes each event."""
    results: list[ingest_pb2.PublishResult] = []
    accepted: list[int] = []
    to_commit: list[event_pb2.Event] = []
    new_ids: set[str] = set()
    stamps = TraceContextStamps()
    for index, event in enumerate(events):
        violations = FieldViolations(prefix=f"events[{index}]")
        validate_event(event, violations)
        if violations:
            results.append(
                ingest_pb2.PublishResult(
                    index=index,
                    event_id=event.event_id if len(event.event_id) <= MAX_ID_CHARS else "",
                    error=violations.to_status(),
                )
            )
            continue
        if not event.event_id:
            event.event_id = str(uuid.uuid4())
            new_ids.add(event.event_id)
        if not event.correlation_id:
            event.correlation_id = str(uuid.uuid4())
        event.sequence = 0
        event.ClearField("ingested_at")
        event.trace_context.CopyFrom(stamps.for_correlation(event.correlation_id))
        results.append(ingest_pb2.PublishResult(index=index))
        accepted.append(index)
        to_commit.append(event)
    return _Checked(results, accepted, to_commit, new_ids)


class Publisher:
    """Turns client batches into committed log entries."""

    def __init__(self, writer: GroupCommitWriter, meter: Meter | None = None) -> None:
        self._writer = writer
        meter = meter or metrics.get_meter(METER_NAME)
        self._ingested = meter.create_counter(
            "corrmesh_events_ingested_total",
            unit="{event}",
            description="Events appended to the log (duplicates of stored events not counted).",
        )

    async def prepare(self, events: Sequence[event_pb2.Event]) -> Prepared:
        """Validates ``events`` and submits the good ones to the writer.

        Returns once they are queued, not committed: await :meth:`finish`.
        Batches are committed in the order their ``prepare`` calls returned.
        Accepted events are completed in place: ids assigned when empty,
        client-set output-only fields replaced, and ``trace_context`` set to
        the current span with the event's correlation id in baggage.
        """
        if len(events) > INLINE_CHECK_LIMIT:
            # ~25 µs per event: a large batch would stall every other call on
            # the event loop. The worker thread sees the same (span) context.
            checked = await asyncio.to_thread(_check, events)
        else:
            checked = _check(events)
        commit = self._writer.submit(checked.to_commit, checked.new_ids)
        return Prepared(checked.results, checked.accepted, commit)

    async def finish(self, prepared: Prepared) -> Outcome:
        """Awaits the commit of ``prepared`` and fills in its results.

        Raises what the commit raised (the events may or may not be stored;
        republishing them is safe).
        """
        return self._outcome(prepared.results, prepared.accepted, await prepared.commit)

    def publish_blocking(self, events: Sequence[event_pb2.Event], timeout: float) -> Outcome:
        """From a thread other than the event loop's: prepare and finish in one, blocking.

        Validation runs in the calling thread, in its (span) context; the
        commit is the writer thread's, shared with every other caller.
        Raises what the commit raised, or TimeoutError after ``timeout`` seconds.
        """
        checked = _check(events)
        commit = self._writer.submit_blocking(checked.to_commit, checked.new_ids)
        return self._outcome(checked.results, checked.accepted, commit.result(timeout))

    def _outcome(
        self,
        results: list[ingest_pb2.PublishResult],
        accepted_indexes: list[int],
        appended: list[Appended],
    ) -> Outcome:
        stored = 0
        correlation_ids: set[str] = set()
        for index, entry in zip(accepted_indexes, appended, strict=True):
            result = results[index]
            result.event_id = entry.event_id
            result.correlation_id = entry.correlation_id
            result.sequence = entry.sequence
            result.duplicate = entry.duplicate
            correlation_ids.add(entry.correlation_id)
            stored += not entry.duplicate
        if stored:
            self._ingested.add(stored)
        accepted = len(accepted_indexes)
        return Outcome(
            results=results,
            accepted_count=accepted,
            rejected_count=len(results) - accepted,
            stored_count=stored,
            correlation_ids=correlation_ids,
        )


def annotate_span(accepted: int, correlation_ids: set[str]) -> None:
    """Records the outcome on the current (server) span: no span per event."""
    span = trace.get_current_span()
    span.set_attribute(EVENTS_ACCEPTED_ATTRIBUTE, accepted)
    if len(correlation_ids) == 1:
        span.set_attribute(CORRELATION_ATTRIBUTE, next(iter(correlation_ids)))
