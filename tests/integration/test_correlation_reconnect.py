"""Correlation waits for Ingest, reconnects after an Ingest restart, ends streams at shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from corrmesh.correlation.server import CorrelationApp
from corrmesh.ingest import client as ingest_client
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.server import Server
from corrmesh.runtime.settings import Settings
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc
from tests.support.correlation_events import event
from tests.support.inprocess import running

TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def ingest_on(port: int, database_url: str) -> AsyncIterator[str]:
    """Ingest on a fixed port, so it can come back where Correlation looks for it."""
    settings = dataclasses.replace(
        Settings(service="ingest"),
        host="127.0.0.1",
        port=port,
        grace_seconds=1.0,
        database_url=database_url,
    )
    server = Server(IngestApp(settings))
    bound = await server.start()
    assert bound == port, f"Ingest could not bind {port}"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop()


async def publish(address: str, *events) -> int:
    # A channel of its own subchannels: the shared ones are still backing off
    # from Correlation's attempts while Ingest was down.
    channel = grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        response = await ingest_client.publish(channel, events)
        assert response.rejected_count == 0
        return response.results[-1].sequence
    finally:
        await channel.close()


async def wait_consumed(stub: Any, sequence: int) -> None:
    """Polls the server's committed offset: no event to wait on across gRPC."""
    request = correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
    async with asyncio.timeout(TIMEOUT):
        while (await stub.GetStats(request)).consumer_sequence < sequence:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_correlation_rides_out_ingest_outages(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    ingest_url = f"sqlite:///{tmp_path / 'ingest.db'}"
    async with (
        running(TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}") as (
            _t,
            topology,
        ),
        running(
            CorrelationApp,
            "correlation",
            database_url=database_url,
            ingest_address=f"127.0.0.1:{port}",
            topology_address=topology,
        ) as (app, address),
    ):
        assert isinstance(app, CorrelationApp)
        assert not await app.ready(), "not ready while Ingest is down"
        async with grpc.aio.insecure_channel(address) as channel:
            stub: Any = correlation_pb2_grpc.CorrelationServiceStub(channel)
            # Ingest appears after Correlation started.
            async with ingest_on(port, ingest_url) as ingest:
                first = await publish(
                    ingest,
                    event(0, event_id="a", fingerprint="f"),
                    event(1, event_id="b", fingerprint="f"),
                )
                await wait_consumed(stub, first)
                assert await app.ready()
            # Ingest restarts; events published meanwhile are not lost.
            async with ingest_on(port, ingest_url) as ingest:
                second = await publish(ingest, event(2, event_id="c", fingerprint="f"))
                await wait_consumed(stub, second)
            group = (
                await stub.GetGroupForEvent(correlation_pb2.GetGroupForEventRequest(event_id="c"))
            ).group
            assert {m.event_id for m in group.members} == {"a", "b", "c"}
            stats = await stub.GetStats(correlation_pb2.GetStatsRequest())
            assert stats.events_in == 3

            # An open WatchGroups stream ends when the server shuts down.
            call = stub.WatchGroups(correlation_pb2.WatchGroupsRequest())
            first_response = await call.read()
            assert isinstance(first_response, correlation_pb2.WatchGroupsResponse)
            # CREATED and MEMBER_ADDED; the analyst's ANALYZED may follow them.
            changes = [
                u
                for u in first_response.updates
                if u.type != correlation_pb2.GROUP_UPDATE_TYPE_ANALYZED
            ]
            assert len(changes) == 2
            app.stopping.set()
            async with asyncio.timeout(TIMEOUT):
                while (await call.read()) is not grpc.aio.EOF:
                    pass
            assert await call.code() == grpc.StatusCode.OK
