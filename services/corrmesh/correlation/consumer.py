"""Reads Ingest's log and feeds the engine; commits each batch in one transaction.

For each SubscribeResponse: every event is analysed inside its own
``correlation.analyze`` span (continuing the trace the event carries), then
the groups, members, edges, updates, the offset (``through_sequence``) and
the watermark are written together. A crash at any point leaves the store at
the end of some whole batch, and the consumer resumes after it; a failed
commit is treated the same way (state reloaded from the store). So a
``kill -9`` and restart give exactly the groups of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from opentelemetry import trace
from opentelemetry.trace import Link

from corrmesh.correlation.dicom import store as dicom_store
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.latency import LatencyReservoir
from corrmesh.correlation.plans import PairRefs
from corrmesh.correlation.relations import TopologyRelations
from corrmesh.correlation.resources import resource_key
from corrmesh.runtime.tracing import (
    capture_trace_context,
    context_of,
    event_span,
    spans_exported,
    tracer,
)
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

BATCH_SIZE = 500
#: Most pairs asked in one RelateResources call (the event's own always are).
MAX_PAIRS_PER_CALL = 2000
BACKOFF_FIRST_SECONDS = 0.2
#: Span links per Topology call: enough to find the events it served.
MAX_LINKS = 32
BACKOFF_MAX_SECONDS = 5.0


class Consumer:
    """The Ingest subscription driving the engine."""

    def __init__(
        self,
        gate: EngineGate,
        ingest: grpc.aio.Channel,
        relations: TopologyRelations,
        latency: LatencyReservoir,
    ) -> None:
        self.gate = gate
        self.engine = gate.engine
        self.relations = relations
        self.latency = latency
        self._stub = ingest_pb2_grpc.IngestServiceStub(ingest)
        self._call: grpc.aio.UnaryStreamCall | None = None  # type: ignore[type-arg]
        self._stopping = False
        self.connected = asyncio.Event()

    @property
    def offset(self) -> int:
        """Last Ingest sequence whose effects are committed."""
        return self.gate.offset

    async def recover(self) -> None:
        """Reloads the offset and the engine's window from the store."""
        await self.gate.recover()

    async def run(self) -> None:
        """Subscribes from the committed offset; reconnects with backoff until stopped."""
        delay = BACKOFF_FIRST_SECONDS
        unavailable_logged = False
        while not self._stopping:
            try:
                self._call = self._stub.Subscribe(
                    ingest_pb2.SubscribeRequest(
                        after_sequence=self.offset, max_batch_size=BATCH_SIZE
                    ),
                    wait_for_ready=False,
                )
                while True:
                    response = await self._call.read()
                    if response is grpc.aio.EOF:
                        break
                    self.connected.set()
                    if unavailable_logged:
                        log.info("ingest stream resumed", extra={"after": self.offset})
                        unavailable_logged = False
                    delay = BACKOFF_FIRST_SECONDS
                    assert isinstance(response, ingest_pb2.SubscribeResponse)
                    await self.handle(response)
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED and self._stopping:
                    return
                if not unavailable_logged:
                    log.warning(
                        "ingest stream failed; retrying with backoff",
                        extra={"code": exc.code().name, "after": self.offset},
                    )
                    unavailable_logged = True
            except Exception:
                log.exception("batch failed; reloading state from the store")
                await self._recover_quietly()
            finally:
                self.connected.clear()
                if self._call is not None:
                    self._call.cancel()
                    self._call = None
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def _recover_quietly(self) -> None:
        try:
            await self.recover()
        except Exception:
            log.exception("reloading state failed; will retry")

    def stop(self) -> None:
        """Ends :meth:`run` after the batch in hand (it is committed or not at all)."""
        self._stopping = True
        if self._call is not None:
            self._call.cancel()

    async def handle(self, response: ingest_pb2.SubscribeResponse) -> None:
        """Analyses one batch and commits it with the offset it reaches."""
        async with self.gate.lock:
            await self._handle(response)

    async def _handle(self, response: ingest_pb2.SubscribeResponse) -> None:
        events = [e for e in response.events if e.sequence > self.offset]
        self.relations.start_batch()
        stored = self.engine.groups_to_load(events)
        if stored:
            # Batch and patient groups not in memory (archived ones reopen).
            headers = await asyncio.to_thread(
                dicom_store.load_headers, self.gate.store.sessions, stored
            )
            self.engine.adopt_headers(headers)
        record = spans_exported()
        for index, event in enumerate(events):
            with event_span(_tracer, "correlation.analyze", event, record=record):
                started = time.perf_counter()
                plan = self.engine.prepare(event)
                missing = self.relations.missing_for(plan)
                if missing:
                    await self._ask_topology(missing, events[index + 1 :])
                # Updates carry the trace of the (first) event that caused them.
                self.engine.apply(plan, self.relations.lookup, capture_trace_context)
                if not plan.duplicate:
                    took = time.perf_counter() - started
                    self.latency.add(took)
                    if self.gate.metrics is not None:
                        self.gate.metrics.latency.record(took)
        await self.gate.commit(max(response.through_sequence, self.offset))

    async def _ask_topology(self, needed: PairRefs, rest: list[event_pb2.Event]) -> None:
        """One RelateResources call for this event's pairs and the batch's likely ones.

        Runs inside the span of the event that needs it, so Topology's server
        span joins that event's trace; the later events whose pairs the call
        also carries are linked to it.
        """
        pairs = dict(needed)
        links: list[Link] = []
        if len(pairs) < MAX_PAIRS_PER_CALL and rest:
            predicted = self.engine.predict_pairs(rest, MAX_PAIRS_PER_CALL - len(pairs))
            for pair, refs in self.relations.missing(predicted).items():
                pairs.setdefault(pair, refs)
            # Whether Topology knows the batch's resources, asked now rather than
            # in a call of its own for each new one.
            for event in rest:
                if len(pairs) >= MAX_PAIRS_PER_CALL:
                    break
                self.relations.add_probe(pairs, resource_key(event.resource), event.resource)
            keys = {key for pair in pairs for key in pair}
            for event in rest:
                if resource_key(event.resource) not in keys:
                    continue
                span_context = trace.get_current_span(
                    context_of(event.trace_context)
                ).get_span_context()
                if span_context.is_valid:
                    links.append(Link(span_context, {"corrmesh.event_id": event.event_id}))
                if len(links) >= MAX_LINKS:
                    break
        with _tracer.start_as_current_span("correlation.relate_resources", links=links) as span:
            span.set_attribute("corrmesh.pairs", len(pairs))
            answered = await self.relations.fetch(pairs)
            span.set_attribute("corrmesh.topology_answered", answered)
