"""A thin client of IngestService for other services and the CLI.

Open the channel with :func:`corrmesh.runtime.clients.open_channel` (traced,
TLS and token from settings) and pass it here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

import grpc

from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc


async def publish(
    channel: grpc.aio.Channel,
    events: Iterable[event_pb2.Event],
    timeout: float | None = None,
) -> ingest_pb2.PublishResponse:
    """Publishes ``events`` in one call; check each result's ``error`` for rejections."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    response: ingest_pb2.PublishResponse = await stub.Publish(
        ingest_pb2.PublishRequest(events=list(events)), timeout=timeout
    )
    return response


async def subscribe(
    channel: grpc.aio.Channel,
    after: int = 0,
    event_filter: ingest_pb2.EventFilter | None = None,
    max_batch_size: int = 0,
) -> AsyncGenerator[ingest_pb2.SubscribeResponse, None]:
    """Follows the log after sequence ``after``, one response (a batch) at a time.

    Store ``through_sequence`` of each response as the position to resume
    from: it moves past events the filter skipped. The stream ends when the
    server shuts down; resubscribe from the stored position.
    """
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    call = stub.Subscribe(
        ingest_pb2.SubscribeRequest(
            after_sequence=after, filter=event_filter, max_batch_size=max_batch_size
        )
    )
    try:
        async for response in call:
            yield response
    finally:
        call.cancel()
