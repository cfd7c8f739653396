"""Subscribe: the log as a resumable, filtered, live stream."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.ingest import collect, events_of, ingest_server, make_event
from tests.support.inprocess import running


def _publish_request(count: int, start: int = 0, **fields: object) -> ingest_pb2.PublishRequest:
    return ingest_pb2.PublishRequest(
        events=[make_event(start + i, **fields) for i in range(count)]  # type: ignore[arg-type]
    )


async def test_subscribe_from_start_in_batches(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        await stub.Publish(_publish_request(10))
        call = stub.Subscribe(ingest_pb2.SubscribeRequest(after_sequence=0, max_batch_size=4))
        responses = await collect(call, lambda rs: sum(len(r.events) for r in rs) >= 10)
        call.cancel()

    assert [len(r.events) for r in responses] == [4, 4, 2]
    assert [r.through_sequence for r in responses] == [4, 8, 10]
    assert all(r.head_sequence == 10 for r in responses)
    assert [e.sequence for e in events_of(responses)] == list(range(1, 11))
    assert all(e.HasField("ingested_at") and e.event_id for e in events_of(responses))


async def test_subscribe_resumes_after_a_sequence(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        await stub.Publish(_publish_request(10))
        call = stub.Subscribe(ingest_pb2.SubscribeRequest(after_sequence=6))
        responses = await collect(call, lambda rs: bool(rs) and rs[-1].through_sequence >= 10)
        call.cancel()
    assert [e.sequence for e in events_of(responses)] == [7, 8, 9, 10]


async def test_filtered_subscription_advances_past_skipped_events(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        await stub.Publish(_mixed())
        event_filter = ingest_pb2.EventFilter(
            namespaces=["billing"], min_severity=event_pb2.SEVERITY_ERROR
        )
        call = stub.Subscribe(ingest_pb2.SubscribeRequest(filter=event_filter))
        first = await collect(call, lambda rs: bool(rs) and rs[-1].through_sequence >= 6)
        matched = events_of(first)
        assert [e.sequence for e in matched] == [2, 5]
        assert first[-1].through_sequence == 6 and first[-1].head_sequence == 6

        # Live: events that do not match still move the position forward.
        await stub.Publish(_publish_request(3, 10))
        skipped = await collect(call, lambda rs: bool(rs) and rs[-1].through_sequence >= 9)
        assert events_of(skipped) == []
        assert skipped[-1].through_sequence == 9
        call.cancel()


def _mixed() -> ingest_pb2.PublishRequest:
    """Six events; only 2 and 5 are ERROR or worse in namespace billing."""
    billing = event_pb2.ResourceRef(cluster="prod-eu", kind="Pod", namespace="billing", name="b")
    return ingest_pb2.PublishRequest(
        events=[
            make_event(0),
            make_event(1, resource=billing, severity=event_pb2.SEVERITY_ERROR),
            make_event(2, resource=billing, severity=event_pb2.SEVERITY_WARNING),
            make_event(3, severity=event_pb2.SEVERITY_CRITICAL),
            make_event(4, resource=billing, severity=event_pb2.SEVERITY_CRITICAL),
            make_event(5),
        ]
    )


async def test_subscriber_receives_events_published_after_it_subscribed(
    database_url: str,
) -> None:
    async with ingest_server(database_url) as (_app, stub):
        call = stub.Subscribe(ingest_pb2.SubscribeRequest())
        published = await stub.Publish(_publish_request(3))
        responses = await collect(call, lambda rs: sum(len(r.events) for r in rs) >= 3)
        more = await stub.Publish(_publish_request(2, 3))
        responses += await collect(call, lambda rs: sum(len(r.events) for r in rs) >= 2)
        call.cancel()
    ids = [r.event_id for r in (*published.results, *more.results)]
    assert [e.event_id for e in events_of(responses)] == ids
    assert [e.sequence for e in events_of(responses)] == [1, 2, 3, 4, 5]


async def test_subscription_ends_cleanly_at_shutdown(database_url: str) -> None:
    # The channel outlives the server, so the client sees how the stream ended.
    async with running(IngestApp, "ingest", database_url=database_url) as (_app, address):
        channel = grpc.aio.insecure_channel(address)
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        await stub.Publish(_publish_request(1))
        call = stub.Subscribe(ingest_pb2.SubscribeRequest())
        await collect(call, lambda rs: bool(rs))
        # Leaving the block stops the server while the stream is open.
    try:
        assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
        # OK, not CANCELLED: the server ended the stream instead of being cut off.
        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


@pytest.mark.parametrize(
    ("request_fields", "bad_fields"),
    [
        ({"after_sequence": -1}, ["after_sequence"]),
        ({"max_batch_size": -5}, ["max_batch_size"]),
        ({"filter": ingest_pb2.EventFilter(domains=[1, 99])}, ["filter.domains[1]"]),  # type: ignore[list-item]
        ({"filter": ingest_pb2.EventFilter(min_severity=7)}, ["filter.min_severity"]),  # type: ignore[arg-type]
    ],
)
async def test_subscribe_rejects_bad_requests(
    database_url: str, request_fields: dict[str, object], bad_fields: list[str]
) -> None:
    async with ingest_server(database_url) as (_app, stub):
        call = stub.Subscribe(ingest_pb2.SubscribeRequest(**request_fields))  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == bad_fields
