"""core/v1 Kubernetes Events published to Ingest as corrmesh events.

Each becomes an Event of domain KUBERNETES: the involved object is the
resource, the reason is the type, count and first/last timestamps are kept
in the Kubernetes details. The event id is derived from the Event's uid and
count, so a relist (which delivers every stored Event again) publishes
nothing twice, while a repeat of the same Event (count + 1) is a new event.
The correlation id is derived from the uid alone: the repeats of one Event
are one story, and the id is known here, before the hop to Ingest.

Each event is published in a trace of its own: a root span per event (kept
across retries), with the correlation id in baggage and on the span, so
Ingest accepts it as that trace's child, stores that trace context on the
event, and its journey through the mesh is not mixed with whichever other
Events happened to arrive at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from corrmesh.ingest.client import publish
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, tracer, with_correlation_id
from corrmesh.topology.kube.mapping import as_dict, as_str, parse_timestamp
from corrmesh.v1 import event_pb2, ingest_pb2

log = logging.getLogger(__name__)

#: Events kept while Ingest is away; the oldest go first.
MAX_PENDING = 10_000
PUBLISH_TIMEOUT_SECONDS = 5.0
IN_FLIGHT = 8
RETRY_INITIAL_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
TITLE_LIMIT = 1000
_NAMESPACE = uuid.UUID("6f1f4d8e-1d59-4d0e-9b9a-6d1e2a3c4b5d")
_RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def to_event(cluster: str, obj: dict[str, Any]) -> event_pb2.Event | None:
    """The corrmesh Event for a core/v1 Event; None when it names no object."""
    metadata = as_dict(obj.get("metadata"))
    involved = as_dict(obj.get("involvedObject"))
    if not involved.get("kind") or not involved.get("name"):
        return None
    reason = as_str(obj.get("reason"))
    message = as_str(obj.get("message"))
    event_type = as_str(obj.get("type"))
    series = as_dict(obj.get("series"))
    count = 0
    for candidate in (obj.get("count"), series.get("count")):
        if isinstance(candidate, int) and candidate > 0:
            count = candidate
            break
    first = parse_timestamp(obj.get("firstTimestamp")) or parse_timestamp(obj.get("eventTime"))
    last = (
        parse_timestamp(series.get("lastObservedTime"))
        or parse_timestamp(obj.get("lastTimestamp"))
        or parse_timestamp(obj.get("eventTime"))
        or first
        or parse_timestamp(metadata.get("creationTimestamp"))
    )
    if last is None:
        return None
    source = as_dict(obj.get("source"))
    details = event_pb2.KubernetesEventDetails(
        reason=reason,
        message=message,
        event_type=event_type,
        count=max(count, 1),
        reporting_component=as_str(obj.get("reportingComponent"))
        or as_str(source.get("component")),
        reporting_instance=as_str(obj.get("reportingInstance")) or as_str(source.get("host")),
        action=as_str(obj.get("action")),
    )
    details.last_timestamp.CopyFrom(last)
    details.first_timestamp.CopyFrom(first or last)
    resource = event_pb2.ResourceRef(
        cluster=cluster,
        kind=as_str(involved.get("kind")),
        namespace=as_str(involved.get("namespace")),
        name=as_str(involved.get("name")),
        uid=as_str(involved.get("uid")),
        api_version=as_str(involved.get("apiVersion")),
    )
    story = "/".join((cluster, as_str(metadata.get("uid")) or as_str(metadata.get("name"))))
    title = f"{reason}: {message}" if reason and message else reason or message or "Event"
    return event_pb2.Event(
        event_id=str(uuid.uuid5(_NAMESPACE, f"{story}/{details.count}")),
        correlation_id=str(uuid.uuid5(_NAMESPACE, f"correlation/{story}")),
        domain=event_pb2.DOMAIN_KUBERNETES,
        source=f"kubernetes/{cluster}",
        resource=resource,
        occurred_at=last,
        severity=event_pb2.SEVERITY_WARNING if event_type == "Warning" else event_pb2.SEVERITY_INFO,
        title=title[:TITLE_LIMIT],
        type=reason,
        fingerprint="/".join(
            ("k8s", cluster, resource.namespace, resource.kind, resource.name, reason)
        ),
        kubernetes=details,
    )


class EventPublisher:
    """Publishes events to Ingest in the background, one trace per event."""

    def __init__(self, channel: grpc.aio.Channel, span_tracer: trace.Tracer | None = None) -> None:
        self.channel = channel
        self.published = 0
        self.dropped = 0
        self.rejected = 0
        self._pending: deque[event_pb2.Event] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._tracer = span_tracer or tracer(__name__)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"k8s-events-{i}") for i in range(IN_FLIGHT)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, events: Iterable[event_pb2.Event]) -> None:
        """Queues events; beyond MAX_PENDING the oldest are dropped (and counted)."""
        for event in events:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(event)
        if self._pending:
            self._idle.clear()
            self._wake.set()

    async def flushed(self) -> None:
        """Returns once everything submitted so far is published or given up."""
        await self._idle.wait()

    async def _worker(self) -> None:
        while True:
            if not self._pending:
                if self._in_flight == 0:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._pending.popleft()
            self._in_flight += 1
            try:
                await self._publish_one(event)
            finally:
                self._in_flight -= 1
                if not self._pending and self._in_flight == 0:
                    self._idle.set()

    async def _publish_one(self, event: event_pb2.Event) -> None:
        # A root span: the event's own trace, not the trace of whatever ran before.
        # One for every attempt: an attempt that timed out may still have been
        # stored, and Ingest then keeps that attempt's trace context.
        root = with_correlation_id(event.correlation_id, otel_context.Context())
        token = otel_context.attach(root)
        try:
            with self._tracer.start_as_current_span(
                "topology.kubernetes_event", kind=trace.SpanKind.PRODUCER
            ) as span:
                span.set_attribute(CORRELATION_ATTRIBUTE, event.correlation_id)
                span.set_attribute("corrmesh.event_id", event.event_id)
                span.set_attribute("k8s.event.reason", event.type)
                response = await self._publish_with_retries(event, span)
        finally:
            otel_context.detach(token)
        if response is None:
            return
        if response.rejected_count:
            self.rejected += 1
            log.warning("event rejected by Ingest", extra={"event_id": event.event_id})
        else:
            self.published += 1

    async def _publish_with_retries(
        self, event: event_pb2.Event, span: trace.Span
    ) -> ingest_pb2.PublishResponse | None:
        """Ingest's answer, or None when it refused the call for good."""
        delay = RETRY_INITIAL_SECONDS
        attempts = 0
        while True:
            attempts += 1
            span.set_attribute("corrmesh.publish_attempts", attempts)
            try:
                return await publish(self.channel, [event], PUBLISH_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRIABLE:
                    self.rejected += 1
                    span.set_status(trace.StatusCode.ERROR, exc.code().name)
                    log.warning("event not published", extra={"code": exc.code().name})
                    return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
