"""Source failures and slow sources, published to Ingest as DICOM-domain events.

Publishing never delays or fails a query: events go out from a background
task, and a missing Ingest is logged, not raised. The fingerprint is stable
per node and kind, so Correlation folds repeated failures of one PACS.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from google.protobuf import timestamp_pb2

from corrmesh.ingest import client as ingest_client
from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.settings import Settings
from corrmesh.v1 import event_pb2
from corrmesh.v1 import spanner_pb2 as pb

log = logging.getLogger(__name__)

SOURCE = "corrmesh/spanner"


def source_event(node: pb.DicomNode, status: pb.SourceStatus, slow: bool) -> event_pb2.Event:
    """The event for one failed (or slow) source; no query keys, so no PHI."""
    kind = "SourceSlow" if slow else "SourceFailed"
    outcome = pb.SourceOutcome.Name(status.outcome).removeprefix("SOURCE_OUTCOME_")
    latency_ms = status.latency.ToMilliseconds()
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    title = (
        f"PACS {node.name} ({node.ae_title}) slow: {latency_ms} ms"
        if slow
        else f"PACS {node.name} ({node.ae_title}) {outcome.lower().replace('_', ' ')}"
    )
    return event_pb2.Event(
        domain=event_pb2.DOMAIN_DICOM,
        source=SOURCE,
        resource=event_pb2.ResourceRef(kind="DicomNode", name=node.name, uid=node.node_id),
        occurred_at=stamp,
        severity=event_pb2.SEVERITY_WARNING if slow else event_pb2.SEVERITY_ERROR,
        title=title,
        description=status.error,
        fingerprint=f"spanner/{node.node_id}/{kind}",
        type=kind,
        attributes={
            "ae_title": node.ae_title,
            "host": node.host,
            "port": str(node.port),
            "outcome": outcome,
            "latency_ms": str(latency_ms),
            "attempts": str(status.attempts),
        },
    )


class Publisher:
    """Sends events to Ingest in the background, one channel for the process."""

    def __init__(self, settings: Settings, slow_seconds: float = 5.0) -> None:
        self.settings = settings
        self.slow_seconds = slow_seconds
        self._channel: grpc.aio.Channel | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def report(self, node: pb.DicomNode, status: pb.SourceStatus) -> None:
        """Publishes an event when the source failed, timed out or was slow."""
        failed = status.outcome in (pb.SOURCE_OUTCOME_FAILED, pb.SOURCE_OUTCOME_TIMED_OUT)
        slow = (
            status.outcome == pb.SOURCE_OUTCOME_SUCCEEDED
            and status.latency.ToNanoseconds() > self.slow_seconds * 1e9
        )
        if not (failed or slow):
            return
        task = asyncio.get_running_loop().create_task(self._send(source_event(node, status, slow)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, event: event_pb2.Event) -> None:
        if self._channel is None:
            self._channel = open_channel(self.settings.ingest_address, self.settings)
        try:
            response = await ingest_client.publish(self._channel, [event], timeout=5.0)
            for result in response.results:
                if result.error.code:
                    log.warning("Ingest rejected a source event: %s", result.error.message)
        except grpc.aio.AioRpcError as exc:
            log.warning("cannot publish a source event to Ingest: %s", exc.code().name)

    async def flush(self) -> None:
        """Waits for events in flight (tests and shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
