"""Correlation with the real Ingest and Topology in-process, over loopback gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc_health.v1 import health_pb2_grpc

from corrmesh.correlation.server import CorrelationApp
from corrmesh.ingest import client as ingest_client
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, event_pb2, topology_pb2_grpc
from tests.support.inprocess import running

if TYPE_CHECKING:
    from corrmesh.v1.correlation_pb2_grpc import CorrelationServiceAsyncStub
    from corrmesh.v1.topology_pb2_grpc import TopologyServiceAsyncStub

TIMEOUT = 20.0


@dataclass
class Mesh:
    app: CorrelationApp
    ingest: grpc.aio.Channel
    correlation: CorrelationServiceAsyncStub
    topology: TopologyServiceAsyncStub
    health: health_pb2_grpc.HealthStub
    ingest_app: IngestApp

    async def publish(self, *events: event_pb2.Event) -> list[int]:
        response = await ingest_client.publish(self.ingest, events)
        assert response.rejected_count == 0, response
        return [r.sequence for r in response.results]

    async def consumed(self, sequence: int) -> None:
        """Waits until Correlation has committed Ingest's log up to ``sequence``."""
        stats = correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)

        async def reached() -> bool:
            return (await self.correlation.GetStats(stats)).consumer_sequence >= sequence

        await poll(reached)


async def poll(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Polls another server's state: there is no event to wait on across gRPC."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@asynccontextmanager
async def mesh(
    database_url: str,
    tmp_path: Path,
    app_class: type[CorrelationApp] = CorrelationApp,
    ingest_settings: Mapping[str, Any] | None = None,
) -> AsyncIterator[Mesh]:
    """Ingest and Topology on SQLite under ``tmp_path``, Correlation on ``database_url``.

    ``ingest_settings`` are more Settings fields for Ingest (its DICOM SCP, ...).
    """
    async with (
        running(
            IngestApp,
            "ingest",
            database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
            **(ingest_settings or {}),
        ) as (ingest_app, ingest_address),
        running(TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}") as (
            _topology,
            topology_address,
        ),
        running(
            app_class,
            "correlation",
            database_url=database_url,
            ingest_address=ingest_address,
            topology_address=topology_address,
        ) as (app, address),
    ):
        assert isinstance(app, CorrelationApp)
        assert isinstance(ingest_app, IngestApp)
        channels = [
            open_channel(ingest_address, traced=False),
            open_channel(address, traced=False),
            open_channel(topology_address, traced=False),
        ]
        try:
            yield Mesh(
                app,
                channels[0],
                cast("CorrelationServiceAsyncStub", stub_of(channels[1])),
                topology_pb2_grpc.TopologyServiceStub(channels[2]),
                health_pb2_grpc.HealthStub(channels[1]),
                ingest_app,
            )
        finally:
            for channel in channels:
                await channel.close()


def stub_of(channel: grpc.aio.Channel) -> Any:
    return correlation_pb2_grpc.CorrelationServiceStub(channel)


async def watch(
    stub: CorrelationServiceAsyncStub,
    request: correlation_pb2.WatchGroupsRequest,
    until: Callable[[list[correlation_pb2.GroupUpdate], int], bool],
) -> tuple[list[correlation_pb2.GroupUpdate], int]:
    """Reads WatchGroups until ``until(updates, through)``; returns both."""
    updates: list[correlation_pb2.GroupUpdate] = []
    through = 0
    call = stub.WatchGroups(request)
    try:
        async with asyncio.timeout(TIMEOUT):
            async for response in call:
                updates.extend(response.updates)
                through = response.through_sequence
                if until(updates, through):
                    break
    finally:
        call.cancel()
    return updates, through
