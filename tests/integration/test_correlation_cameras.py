"""Multi-camera correlation end to end (AC1), and storing events never waits for
correlation (AC6): detections are acknowledged while Correlation is not even running."""

from __future__ import annotations

from pathlib import Path

from corrmesh.correlation.server import CorrelationApp
from corrmesh.ingest import client as ingest_client
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc
from tests.support.correlation_events import camera
from tests.support.correlation_mesh import poll
from tests.support.inprocess import running


async def test_a_person_walking_past_three_cameras(database_url: str, tmp_path: Path) -> None:
    async with (
        running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'ingest.db'}") as (
            _i,
            ingest,
        ),
        running(TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topo.db'}") as (
            _t,
            topology,
        ),
    ):
        channel = open_channel(ingest, traced=False)
        try:
            # Correlation is down: the detections are still accepted and durable.
            walk = [
                camera(0.0, "cam-gate", event_id="gate"),
                camera(4.0, "cam-drive", event_id="drive"),
                camera(8.5, "cam-door", event_id="door"),
                camera(6.0, "cam-street", "vehicle", event_id="car"),
            ]
            reply = await ingest_client.publish(channel, walk)
            assert reply.rejected_count == 0
            head = reply.results[-1].sequence
        finally:
            await channel.close()

        async with (
            running(
                CorrelationApp,
                "correlation",
                database_url=database_url,
                ingest_address=ingest,
                topology_address=topology,
            ) as (_app, address),
            open_channel(address, traced=False) as correlation_channel,
        ):
            correlation = correlation_pb2_grpc.CorrelationServiceStub(correlation_channel)

            async def consumed() -> bool:
                stats = await correlation.GetStats(correlation_pb2.GetStatsRequest())
                return bool(stats.consumer_sequence >= head)

            await poll(consumed)
            request = correlation_pb2.GetGroupForEventRequest(event_id="door")
            group = (await correlation.GetGroupForEvent(request)).group
            assert group.type == correlation_pb2.GROUP_TYPE_MULTI_CAMERA
            assert {m.event_id for m in group.members} == {"gate", "drive", "door"}
            by_id = {m.event_id: m for m in group.members}
            assert set(by_id["door"].correlated_event_ids) == {"gate", "drive"}
            assert {e.strategy for e in group.edges} == {"multi_camera"}
            assert "person seen by cameras cam-gate and cam-drive on controller nvr-1" in (
                group.edges[0].reason
            )
            listed = await correlation.ListGroups(correlation_pb2.ListGroupsRequest())
            assert len(listed.groups) == 1, "the car on the street is alone"
