"""The log beneath the RPCs: bounded reads, several replicas, readiness, the client helpers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from corrmesh.ingest import client
from corrmesh.ingest import log as event_log
from corrmesh.ingest.filters import filter_conditions
from corrmesh.ingest.log import EventLog
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.db import create_db_engine
from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.ingest import events_of, ingest_server, make_event
from tests.support.inprocess import running


async def test_a_filtered_read_examines_a_bounded_window(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(create_db_engine(database_url))
    await log.open()
    try:
        events = [make_event(i, event_id=f"e{i}", correlation_id="c") for i in range(7)]
        await log.append([events])
        monkeypatch.setattr(event_log, "SCAN_WINDOW", 3)
        nothing = filter_conditions(ingest_pb2.EventFilter(sources=["nobody"]))
        throughs = []
        position = 0
        while position < 7:
            batch = await asyncio.to_thread(log.read_after, position, 100, nothing)
            assert batch.items == [] and batch.head == 7
            position = batch.through
            throughs.append(position)
        assert throughs == [3, 6, 7]
        # Nothing beyond the head: the position stays.
        assert (await asyncio.to_thread(log.read_after, 7, 100)).through == 7
    finally:
        log.close()


async def test_replicas_sharing_postgresql_keep_one_gap_free_order(postgres_url: str) -> None:
    # Replicas share PostgreSQL; the embedded SQLite log has one writer process.
    async with (
        ingest_server(postgres_url) as (_a, first),
        ingest_server(postgres_url) as (_b, second),
    ):

        async def publisher(stub: object, name: str) -> list[int]:
            sequences = []
            for call in range(10):
                events = [make_event(i, event_id=f"{name}-{call}-{i}") for i in range(5)]
                response = await stub.Publish(ingest_pb2.PublishRequest(events=events))  # type: ignore[attr-defined]
                sequences += [r.sequence for r in response.results]
            return sequences

        results = await asyncio.gather(
            *(
                publisher(stub, f"{label}{n}")
                for n in range(5)
                for label, stub in (("a", first), ("b", second))
            )
        )
        assert sorted(s for seqs in results for s in seqs) == list(range(1, 501))
        # Either replica serves the whole log in that order.
        listed = await second.ListEvents(ingest_pb2.ListEventsRequest(page_size=1000))
        assert [e.sequence for e in listed.events] == list(range(1, 501))


async def test_ready_and_health(database_url: str) -> None:
    async with (
        running(IngestApp, "ingest", database_url=database_url) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        assert isinstance(app, IngestApp)
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="corrmesh.v1.IngestService")

        # Polled: Health.Watch fails behind the OpenTelemetry aio interceptor.
        for _ in range(200):
            reply = await health.Check(request)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("Ingest never reported SERVING")
        assert await app.ready()
        await app.writer.stop()
        assert not await app.ready()  # without its writer Ingest cannot accept events
        app.writer.start()
        assert await app.ready()


async def test_client_helpers_publish_and_subscribe(database_url: str) -> None:
    async with running(IngestApp, "ingest", database_url=database_url) as (_app, address):
        channel = open_channel(address)
        try:
            response = await client.publish(
                channel, [make_event(0), make_event(1, domain=event_pb2.DOMAIN_DICOM)]
            )
            assert response.accepted_count == 2
            dicom_only = ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM])
            received: list[ingest_pb2.SubscribeResponse] = []
            stream = client.subscribe(channel, after=0, event_filter=dicom_only)
            async for batch in stream:
                received.append(batch)
                if batch.through_sequence >= 2:
                    break
            await stream.aclose()
        finally:
            await channel.close()
    assert [e.sequence for e in events_of(received)] == [2]
    assert received[-1].through_sequence == 2


async def test_appends_survive_the_loss_of_the_writers_connection(postgres_url: str) -> None:
    # The log holds one connection for its appends; when the database drops it
    # (a restart, an administrator), the next append reconnects instead of failing.
    log = EventLog(create_db_engine(postgres_url))
    await log.open()
    try:
        first = await log.append([[make_event(0, event_id="before")]])
        assert log._writer is not None
        writer_pid = log._writer.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        log._writer.rollback()  # end the read transaction the query opened
        killer = create_db_engine(postgres_url)
        with killer.connect() as admin:
            assert admin.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": writer_pid})
        killer.dispose()

        after = await log.append([[make_event(1, event_id="after")]])
        assert [r.sequence for r in after[0]] == [first[0][0].sequence + 1]
        stored = await asyncio.to_thread(log.read_after, 0, 10)
        assert [e.event_id for e in stored.items] == ["before", "after"]
    finally:
        log.close()
