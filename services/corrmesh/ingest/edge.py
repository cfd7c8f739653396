"""The path every edge adapter publishes through: the same one as Publish.

Adapters (the C-STORE SCP, the forwarder, the Alertmanager webhook) hand
their events to :class:`EdgePublisher`, which validates them, assigns ids,
stamps the trace context and awaits the group commit: when it returns, the
accepted events are durable. The SCP runs in pynetdicom's threads, so it
uses :meth:`EdgePublisher.publish_from_thread`, which runs the same
coroutine on the server's event loop and blocks until the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry.context import Context

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

    def __init__(self, publisher: Publisher, loop: asyncio.AbstractEventLoop) -> None:
        self._publisher = publisher
        self._loop = loop

    async def publish(self, events: Sequence[event_pb2.Event]) -> Outcome:
        """Publishes ``events`` in the current (span) context; returns once they are durable."""
        prepared = await self._publisher.prepare(events)
        return await self._publisher.finish(prepared)

    async def _publish_in(self, events: Sequence[event_pb2.Event], ctx: Context) -> Outcome:
        token = otel_context.attach(ctx)
        try:
            return await self.publish(events)
        finally:
            otel_context.detach(token)

    def publish_from_thread(
        self, events: Sequence[event_pb2.Event], timeout: float = COMMIT_TIMEOUT_SECONDS
    ) -> Outcome:
        """From a thread other than the loop's: publishes in this thread's context, blocking.

        Raises RejectedEventsError when validation refused any of them, or what the
        commit raised.
        """
        future = asyncio.run_coroutine_threadsafe(
            self._publish_in(events, otel_context.get_current()), self._loop
        )
        outcome = future.result(timeout)
        if outcome.rejected_count:
            raise RejectedEventsError(rejected_fields(outcome))
        return outcome
