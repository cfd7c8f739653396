"""Publish and PublishStream against a real Ingest server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2
from sqlalchemy import select

from corrmesh.ingest.models import EventRecord
from corrmesh.ingest.server import IngestApp
from corrmesh.ingest.validation import MAX_BATCH_EVENTS
from corrmesh.runtime.db import create_db_engine
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.ingest import collect, events_of, ingest_server, make_event, status_fields
from tests.support.inprocess import running


async def test_mixed_batch_accepts_good_events_and_names_bad_fields(database_url: str) -> None:
    no_time = make_event()
    no_time.ClearField("occurred_at")
    events = [
        make_event(),
        make_event(title="", domain=event_pb2.DOMAIN_UNSPECIFIED),
        make_event(1),
        no_time,
        make_event(
            resource=event_pb2.ResourceRef(name="DOE^JANE"),
            attributes={"": "DOE^JANE 1970-01-01"},
            severity=42,  # type: ignore[arg-type]
        ),
        # PostgreSQL refuses NUL in text: caught here, so the commit of the rest succeeds.
        make_event(source="kubernetes\x00"),
    ]
    async with ingest_server(database_url) as (_app, stub):
        response = await stub.Publish(ingest_pb2.PublishRequest(events=events))

        assert (response.accepted_count, response.rejected_count) == (2, 4)
        assert [r.index for r in response.results] == [0, 1, 2, 3, 4, 5]
        good = [response.results[0], response.results[2]]
        assert [r.sequence for r in good] == [1, 2]
        for result in good:
            assert not result.HasField("error")
            assert uuid.UUID(result.event_id) and uuid.UUID(result.correlation_id)
            assert not result.duplicate
        assert response.results[0].correlation_id != response.results[2].correlation_id

        errors = {i: response.results[i].error for i in (1, 3, 4, 5)}
        assert all(e.code == code_pb2.INVALID_ARGUMENT for e in errors.values())
        assert status_fields(errors[1]) == ["events[1].domain", "events[1].title"]
        assert status_fields(errors[3]) == ["events[3].occurred_at"]
        assert status_fields(errors[4]) == [
            "events[4].severity",
            "events[4].resource.kind",
            "events[4].attributes",
        ]
        assert status_fields(errors[5]) == ["events[5].source"]
        for error in errors.values():  # PHI never comes back in an error
            assert "DOE" not in str(error) and "1970" not in str(error)
        assert all(response.results[i].sequence == 0 for i in errors)

        stored = await stub.GetEvent(ingest_pb2.GetEventRequest(event_id=good[1].event_id))
        event = stored.event
        assert event.sequence == 2 and event.HasField("ingested_at")
        assert event.correlation_id == good[1].correlation_id
        assert event.title == events[2].title and event.resource.name == "checkout-1"


async def test_oversize_batch_is_rejected_as_a_whole(database_url: str) -> None:
    events = [make_event(i) for i in range(MAX_BATCH_EVENTS + 1)]
    async with ingest_server(database_url) as (_app, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(ingest_pb2.PublishRequest(events=events))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["events"]

        # Nothing of it was stored, and the server keeps serving.
        response = await stub.Publish(ingest_pb2.PublishRequest(events=[make_event()]))
        assert response.results[0].sequence == 1


async def test_event_id_is_an_idempotency_key(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        first = await stub.Publish(ingest_pb2.PublishRequest(events=[make_event(event_id="e-1")]))
        again = await stub.Publish(
            ingest_pb2.PublishRequest(
                events=[make_event(5, event_id="e-1", correlation_id="other"), make_event(6)]
            )
        )
        original = first.results[0]
        assert not original.duplicate and original.sequence == 1
        repeat = again.results[0]
        assert repeat.duplicate
        assert (repeat.event_id, repeat.sequence) == ("e-1", 1)
        assert repeat.correlation_id == original.correlation_id
        assert again.accepted_count == 2 and again.results[1].sequence == 2

        # Twice in one batch: stored once, the second points at the first.
        batch = await stub.Publish(
            ingest_pb2.PublishRequest(
                events=[make_event(event_id="e-2"), make_event(1, event_id="e-2")]
            )
        )
        one, two = batch.results
        assert (one.duplicate, two.duplicate) == (False, True)
        assert one.sequence == two.sequence == 3
        assert one.correlation_id == two.correlation_id

        listed = await stub.ListEvents(ingest_pb2.ListEventsRequest())
        assert [e.event_id for e in listed.events].count("e-1") == 1
        assert [e.sequence for e in listed.events] == [1, 2, 3]
        assert listed.events[0].correlation_id == original.correlation_id


async def test_acknowledged_events_are_durable(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        response = await stub.Publish(
            ingest_pb2.PublishRequest(events=[make_event(i) for i in range(3)])
        )
        acknowledged = [r.event_id for r in response.results]

        # Read through a fresh engine while the server still runs: committed.
        engine = create_db_engine(database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(
                        EventRecord.sequence, EventRecord.event_id, EventRecord.payload
                    ).order_by(EventRecord.sequence)
                ).all()
        finally:
            engine.dispose()
        assert [(r.sequence, r.event_id) for r in rows] == list(enumerate(acknowledged, 1))
        payload = event_pb2.Event.FromString(rows[0].payload)
        assert (payload.sequence, payload.event_id) == (1, acknowledged[0])

    # A restarted server serves them and continues the sequence.
    async with ingest_server(database_url) as (_app, stub):
        more = await stub.Publish(ingest_pb2.PublishRequest(events=[make_event(9)]))
        assert more.results[0].sequence == 4
        listed = await stub.ListEvents(ingest_pb2.ListEventsRequest())
        assert [e.event_id for e in listed.events][:3] == acknowledged


async def _ack(call: Any) -> ingest_pb2.PublishStreamResponse:
    response = await call.read()
    assert isinstance(response, ingest_pb2.PublishStreamResponse), response
    return response


async def test_publish_stream_acknowledges_each_request_by_id(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        call = stub.PublishStream()
        await call.write(ingest_pb2.PublishStreamRequest(request_id="r1", events=[make_event()]))
        first = await _ack(call)
        assert first.request_id == "r1" and first.accepted_count == 1
        # Durable before the acknowledgement.
        got = await stub.GetEvent(ingest_pb2.GetEventRequest(event_id=first.results[0].event_id))
        assert got.event.sequence == first.results[0].sequence

        # A bad event does not end the stream; pipelined requests keep order.
        await call.write(
            ingest_pb2.PublishStreamRequest(
                request_id="r2", events=[make_event(1), make_event(2, source="")]
            )
        )
        await call.write(ingest_pb2.PublishStreamRequest(request_id="r3", events=[make_event(3)]))
        second, third = await _ack(call), await _ack(call)
        assert (second.request_id, third.request_id) == ("r2", "r3")
        assert (second.accepted_count, second.rejected_count) == (1, 1)
        assert status_fields(second.results[1].error) == ["events[1].source"]
        assert second.results[0].sequence < third.results[0].sequence

        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_publish_stream_ends_cleanly_at_shutdown(database_url: str) -> None:
    async with running(IngestApp, "ingest", database_url=database_url) as (_app, address):
        channel = grpc.aio.insecure_channel(address)
        call = ingest_pb2_grpc.IngestServiceStub(channel).PublishStream()
        await call.write(ingest_pb2.PublishStreamRequest(request_id="r1", events=[make_event()]))
        assert (await _ack(call)).request_id == "r1"
        # The client keeps the stream open; leaving the block stops the server.
    try:
        assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


async def test_publish_stream_rejects_an_oversize_request(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        call = stub.PublishStream()
        await call.write(ingest_pb2.PublishStreamRequest(request_id="ok", events=[make_event()]))
        assert (await _ack(call)).request_id == "ok"
        events = [make_event(i) for i in range(MAX_BATCH_EVENTS + 1)]
        await call.write(ingest_pb2.PublishStreamRequest(request_id="big", events=events))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["events"]


async def test_concurrent_publishers_get_unique_gap_free_sequences(database_url: str) -> None:
    publishers, calls_each, batch = 20, 10, 5
    async with ingest_server(database_url) as (app, stub):

        async def publisher(number: int) -> list[int]:
            sequences: list[int] = []
            for call in range(calls_each):
                events = [
                    make_event(call, event_id=f"p{number}-c{call}-e{i}") for i in range(batch)
                ]
                response = await stub.Publish(ingest_pb2.PublishRequest(events=events))
                sequences.extend(r.sequence for r in response.results)
            return sequences

        per_publisher = await asyncio.gather(*(publisher(n) for n in range(publishers)))
        total = publishers * calls_each * batch

        acknowledged = sorted(s for seqs in per_publisher for s in seqs)
        assert acknowledged == list(range(1, total + 1))
        for sequences in per_publisher:  # one caller's batches stay in its order
            assert sequences == sorted(sequences)
        # Concurrent calls shared commits.
        assert app.writer.commits < publishers * calls_each

        call = stub.Subscribe(ingest_pb2.SubscribeRequest(after_sequence=0))
        responses = await collect(call, lambda rs: bool(rs) and rs[-1].through_sequence >= total)
        call.cancel()
        streamed = events_of(responses)
        assert [e.sequence for e in streamed] == list(range(1, total + 1))
        assert len({e.event_id for e in streamed}) == total
