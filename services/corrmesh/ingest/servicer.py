"""IngestService RPCs over the event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from sqlalchemy.exc import SQLAlchemyError

from corrmesh.ingest.filters import filter_conditions
from corrmesh.ingest.log import EventLog, LogBatch
from corrmesh.ingest.publish import Outcome, Prepared, Publisher, annotate_span
from corrmesh.ingest.validation import MAX_ID_CHARS, validate_batch_size, validate_filter
from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    unavailable_status,
)
from corrmesh.runtime.paging import (
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    page_size,
)
from corrmesh.runtime.streams import Batch, HeadNotifier, clamp_batch, follow
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]

#: Requests of one PublishStream being validated or committed at once; more
#: in flight lets one stream fill a group commit, the cap bounds its memory.
MAX_STREAM_IN_FLIGHT = 32
_UNAVAILABLE = "the event log is unavailable; retry (republishing by event_id is safe)"


class _StreamEnd:
    """Marks the end of a PublishStream's requests (with the reader's error, if any)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def _until_stopping(
    requests: AsyncIterator[ingest_pb2.PublishStreamRequest], stopping: asyncio.Event
) -> AsyncIterator[ingest_pb2.PublishStreamRequest]:
    """``requests`` until the client finishes or the server begins shutting down."""
    iterator = aiter(requests)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """The five RPCs of corrmesh.v1.IngestService."""

    def __init__(
        self,
        event_log: EventLog,
        publisher: Publisher,
        notifier: HeadNotifier,
        stopping: asyncio.Event,
    ) -> None:
        self._log = event_log
        self._publisher = publisher
        self._notifier = notifier
        self._stopping = stopping

    async def _finish(self, prepared: Prepared, context: Context) -> Outcome:
        try:
            return await self._publisher.finish(prepared)
        except SQLAlchemyError:
            await abort(context, unavailable_status(_UNAVAILABLE))

    async def Publish(  # noqa: N802 (gRPC method name)
        self, request: ingest_pb2.PublishRequest, context: Context
    ) -> ingest_pb2.PublishResponse:
        violations = FieldViolations()
        validate_batch_size(len(request.events), violations)
        if violations:
            await abort_invalid(context, violations)
        outcome = await self._finish(await self._publisher.prepare(request.events), context)
        annotate_span(outcome.accepted_count, outcome.correlation_ids)
        return ingest_pb2.PublishResponse(
            results=outcome.results,
            accepted_count=outcome.accepted_count,
            rejected_count=outcome.rejected_count,
        )

    async def PublishStream(  # noqa: N802 (gRPC method name)
        self,
        request_iterator: AsyncIterator[ingest_pb2.PublishStreamRequest],
        context: Context,
    ) -> AsyncIterator[ingest_pb2.PublishStreamResponse]:
        # A reader task validates and submits requests as they arrive, so
        # several requests of this stream can share one commit; responses still
        # go out one per request, in request order, each after its commit. At
        # shutdown the reader stops taking requests; those already taken are
        # answered, then the stream ends.
        queue: asyncio.Queue[tuple[str, Prepared] | FieldViolations | _StreamEnd] = asyncio.Queue()
        in_flight = asyncio.Semaphore(MAX_STREAM_IN_FLIGHT)

        async def read_requests() -> None:
            error: BaseException | None = None
            try:
                async for request in _until_stopping(request_iterator, self._stopping):
                    violations = FieldViolations()
                    validate_batch_size(len(request.events), violations)
                    if violations:
                        queue.put_nowait(violations)
                        return
                    await in_flight.acquire()
                    prepared = await self._publisher.prepare(request.events)
                    queue.put_nowait((request.request_id, prepared))
            except Exception as exc:
                error = exc
            finally:
                queue.put_nowait(_StreamEnd(error))

        reader = asyncio.create_task(read_requests(), name="publish-stream-reader")
        accepted = 0
        correlation_ids: set[str] = set()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _StreamEnd):
                    if item.error is not None:
                        raise item.error
                    return
                if isinstance(item, FieldViolations):
                    await abort_invalid(context, item)
                request_id, prepared = item
                outcome = await self._finish(prepared, context)
                in_flight.release()
                accepted += outcome.accepted_count
                if len(correlation_ids) < 2:
                    correlation_ids |= outcome.correlation_ids
                yield ingest_pb2.PublishStreamResponse(
                    request_id=request_id,
                    results=outcome.results,
                    accepted_count=outcome.accepted_count,
                    rejected_count=outcome.rejected_count,
                )
        finally:
            reader.cancel()
            annotate_span(accepted, correlation_ids)

    async def Subscribe(  # noqa: N802 (gRPC method name)
        self, request: ingest_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[ingest_pb2.SubscribeResponse]:
        violations = FieldViolations()
        if request.after_sequence < 0:
            violations.add("after_sequence", "must not be negative")
        if request.max_batch_size < 0:
            violations.add("max_batch_size", "must not be negative")
        validate_filter(request.filter, violations.nested("filter"))
        if violations:
            await abort_invalid(context, violations)
        conditions = filter_conditions(request.filter)
        # Headers now: the client knows the stream is open before the first event.
        await context.send_initial_metadata(())

        async def read_after(after: int, limit: int) -> Batch[event_pb2.Event]:
            return await asyncio.to_thread(self._log.read_after, after, limit, conditions)

        batches = follow(
            read_after,
            request.after_sequence,
            self._notifier,
            self._stopping,
            clamp_batch(request.max_batch_size),
        )
        try:
            async for batch in batches:
                # Heartbeats are plain Batches; reads know the head they saw.
                head = batch.head if isinstance(batch, LogBatch) else self._notifier.head
                yield ingest_pb2.SubscribeResponse(
                    events=batch.items,
                    through_sequence=batch.through,
                    head_sequence=max(head, batch.through),
                )
        except SQLAlchemyError:
            await abort(context, unavailable_status(_UNAVAILABLE))

    async def GetEvent(  # noqa: N802 (gRPC method name)
        self, request: ingest_pb2.GetEventRequest, context: Context
    ) -> ingest_pb2.GetEventResponse:
        violations = FieldViolations()
        if not request.event_id:
            violations.add("event_id", "is required")
        elif len(request.event_id) > MAX_ID_CHARS:
            violations.add("event_id", f"must be at most {MAX_ID_CHARS} chars")
        if violations:
            await abort_invalid(context, violations)
        try:
            event = await asyncio.to_thread(self._log.get, request.event_id)
        except SQLAlchemyError:
            await abort(context, unavailable_status(_UNAVAILABLE))
        if event is None:
            await abort_not_found(context, "corrmesh.v1.Event", request.event_id)
        return ingest_pb2.GetEventResponse(event=event)

    async def ListEvents(  # noqa: N802 (gRPC method name)
        self, request: ingest_pb2.ListEventsRequest, context: Context
    ) -> ingest_pb2.ListEventsResponse:
        violations = FieldViolations()
        size = page_size(request.page_size, violations)
        validate_filter(request.filter, violations.nested("filter"))
        fingerprint = filter_fingerprint(request.filter.SerializeToString(deterministic=True).hex())
        position = decode_page_token(request.page_token, fingerprint, violations)
        valid_position = type(position) is int and position >= 0
        if position is not None and not valid_position:
            violations.add("page_token", "not a token this service issued")
        if violations:
            await abort_invalid(context, violations)
        try:
            events, more = await asyncio.to_thread(
                self._log.list_page, position or 0, size, filter_conditions(request.filter)
            )
        except SQLAlchemyError:
            await abort(context, unavailable_status(_UNAVAILABLE))
        next_token = encode_page_token(events[-1].sequence, fingerprint) if more else ""
        return ingest_pb2.ListEventsResponse(events=events, next_page_token=next_token)
