"""The path every edge adapter publishes through: the same one as Publish.

Adapters (the C-STORE SCP, the forwarder, the Alertmanager webhook) hand
their events to :class:`EdgePublisher`, which validates them, assigns ids,
stamps the trace context and awaits the group commit: when it returns, the
accepted events are durable. The SCP runs in pynetdicom's threads, so it
uses :meth:`EdgePublisher.publish_from_thread`, which validates in the
calling thread and commits there too when no other commit is under way
(otherwise it waits for the group commit that takes its events along),
without a detour through the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from corrmesh.ingest.publish import Outcome, Publisher
from corrmesh.runtime.errors import field_violation_names
from corrmesh.v1 import event_pb2

#: How long an edge thread waits for its events to become durable.
COMMIT_TIMEOUT_SECONDS = 30.0


class RejectedEventsError(Exception):
    """Validation refused some events of an edge batch; names the fields only."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(f"events rejected by validation: {', '.join(fields) or 'unknown'}")
        self.fields = fields


def rejected_fields(outcome: Outcome) -> list[str]:
    """The field paths of every rejected event of ``outcome``."""
    return [
        name
        for result in outcome.results
        if result.HasField("error")
        for name in field_violation_names(result.error)
    ]


class EdgePublisher:
    """Validates and commits events for the edge adapters of one Ingest server."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def publish(self, events: Sequence[event_pb2.Event]) -> Outcome:
        """Publishes ``events`` in the current (span) context; returns once they are durable."""
        prepared = await self._publisher.prepare(events)
        return await self._publisher.finish(prepared)

    def publish_from_thread(
        self, events: Sequence[event_pb2.Event], timeout: float = COMMIT_TIMEOUT_SECONDS
    ) -> Outcome:
        """From a thread other than the loop's: publishes in this thread's context, blocking.

        Raises RejectedEventsError when validation refused any of them, or what the
        commit raised.
        """
        outcome = self._publisher.publish_blocking(events, timeout)
        if outcome.rejected_count:
            raise RejectedEventsError(rejected_fields(outcome))
        return outcome
