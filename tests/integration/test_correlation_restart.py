"""kill -9 Correlation mid-stream, restart it: the groups are an uninterrupted run's.

Ingest and Topology run in-process; Correlation runs as its own process
(``python -m corrmesh.correlation``) so it can be SIGKILLed at any moment.
The reference is an uninterrupted in-process run over the same Ingest log on
a fresh database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from sqlalchemy import func, select

from corrmesh.correlation.models import EdgeRow, GroupMemberRow, GroupUpdateRow
from corrmesh.correlation.server import CorrelationApp
from corrmesh.correlation.store import CorrelationStore
from corrmesh.ingest import client as ingest_client
from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, event_pb2
from tests.support.correlation_events import incident_storm
from tests.support.inprocess import running

EVENTS = 3000
KILLS = 3
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CorrelationProcess:
    """``python -m corrmesh.correlation`` on a free port, killable at will."""

    def __init__(self, database_url: str, ingest: str, topology: str, log: Path) -> None:
        self.args = [
            "-m",
            "corrmesh.correlation",
            "--host",
            "127.0.0.1",
            "--database-url",
            database_url,
            "--ingest-address",
            ingest,
            "--topology-address",
            topology,
        ]
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""

    async def start(self) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.args,
                "--port",
                str(port),
                cwd=ROOT,
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
                stdout=output,
                stderr=output,
            )

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        self.process = None


async def consumer_sequence(address: str) -> int | None:
    """GetStats.consumer_sequence, or None while the server does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = correlation_pb2_grpc.CorrelationServiceStub(channel)
        try:
            stats = await stub.GetStats(
                correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC), timeout=2
            )
        except grpc.aio.AioRpcError:
            return None
        return stats.consumer_sequence


async def wait_for_sequence(address: str, at_least: int, timeout: float = 120) -> int:
    async with asyncio.timeout(timeout):
        while True:
            sequence = await consumer_sequence(address)
            if sequence is not None and sequence >= at_least:
                return sequence
            await asyncio.sleep(0.02)  # polling another process


def memberships(store: CorrelationStore) -> set[frozenset[str]]:
    with store.sessions() as session:
        rows = session.execute(select(GroupMemberRow.group_id, GroupMemberRow.event_id)).all()
    groups: dict[str, set[str]] = {}
    for group_id, event_id in rows:
        groups.setdefault(group_id, set()).add(event_id)
    return {frozenset(g) for g in groups.values()}


def assert_no_duplicates(store: CorrelationStore) -> None:
    with store.sessions() as session:
        edges = session.execute(select(EdgeRow.from_event_id, EdgeRow.to_event_id)).all()
        assert len(edges) == len(set(edges))
        sequences = session.scalars(select(GroupUpdateRow.sequence)).all()
        assert sorted(sequences) == list(range(1, len(sequences) + 1))
        causes: list[str] = []
        for payload in session.scalars(select(GroupUpdateRow.payload)):
            causes += correlation_pb2.GroupUpdate.FromString(payload).event_ids
        assert len(causes) == len(set(causes)), "an event was applied twice"
        members = session.scalar(select(func.count()).select_from(GroupMemberRow))
        distinct = session.scalar(select(func.count(func.distinct(GroupMemberRow.event_id))))
        assert members == distinct


@asynccontextmanager
async def peers(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with (
        running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'ingest.db'}") as (
            _i,
            ingest,
        ),
        running(TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}") as (
            _t,
            topology,
        ),
    ):
        yield ingest, topology


async def publish(address: str, events: list[event_pb2.Event]) -> int:
    channel = open_channel(address, traced=False)
    try:
        last = 0
        for start in range(0, len(events), 250):
            response = await ingest_client.publish(channel, events[start : start + 250])
            assert response.rejected_count == 0
            last = response.results[-1].sequence
        return last
    finally:
        await channel.close()


async def test_sigkill_and_restart_gives_the_uninterrupted_groups(
    database_url: str, tmp_path: Path
) -> None:
    events = incident_storm(EVENTS)
    for built in events:
        built.sequence = 0
    async with peers(tmp_path) as (ingest, topology):
        process = CorrelationProcess(database_url, ingest, topology, tmp_path / "correlation.log")
        mid_stream_kills = 0
        try:
            published = 0
            share = len(events) // KILLS
            for round_number in range(KILLS):
                await process.start()
                part = events[round_number * share : (round_number + 1) * share]
                head = await publish(ingest, part)
                published += len(part)
                # Kill once it has committed something of this round, before the end.
                seen = await wait_for_sequence(process.address, head - len(part) + 50)
                await process.kill()
                if seen < head:
                    mid_stream_kills += 1
            rest = events[KILLS * share :]
            head = await publish(ingest, rest) if rest else head
            await process.start()
            final = await wait_for_sequence(process.address, head)
            assert final == head == len(events)
            async with grpc.aio.insecure_channel(process.address) as channel:
                stats = await correlation_pb2_grpc.CorrelationServiceStub(channel).GetStats(
                    correlation_pb2.GetStatsRequest()
                )
            assert stats.events_in == len(events), "every event counted exactly once"
        finally:
            await process.kill()
        assert mid_stream_kills >= 1, "no kill landed mid-stream"

        reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
        async with running(
            CorrelationApp,
            "correlation",
            database_url=reference_url,
            ingest_address=ingest,
            topology_address=topology,
        ) as (_app, address):
            await wait_for_sequence(address, head)

    restarted = CorrelationStore(database_url)
    reference = CorrelationStore(reference_url)
    try:
        expected = memberships(reference)
        assert len(expected) > 100
        got = memberships(restarted)
        assert got == expected
        everyone = [e for group in got for e in group]
        assert len(everyone) == len(set(everyone)), "an event is in two groups"
        assert_no_duplicates(restarted)
        assert_no_duplicates(reference)
    finally:
        restarted.close()
        reference.close()
