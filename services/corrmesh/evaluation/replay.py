"""Replaying a scenario through a running mesh and reading back the groups.

Topology first learns the scenario's edges as declared dependencies; then the
events go to Ingest in file order at full speed (their own event times, not
the wall clock); then the replay waits until Correlation has consumed the
last of them and its root-cause analysis is current, and lists every group.

The events travel over ``PublishStream`` with a few requests in flight: one
stream is committed in request order, so Ingest's log keeps the file's time
order. Concurrent ``Publish`` calls could be committed in either order, and
Correlation treats an event more than its allowed lateness older than the
newest one it has seen as late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

from corrmesh.evaluation.scenario import Scenario
from corrmesh.evaluation.wire import dependencies, to_event
from corrmesh.runtime.clients import open_channel
from corrmesh.v1 import (
    correlation_pb2,
    correlation_pb2_grpc,
    event_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    topology_pb2,
    topology_pb2_grpc,
)

BATCH_EVENTS = 500
IN_FLIGHT = 4
#: Topology takes at most 10,000 dependencies a call.
DEPENDENCIES_PER_CALL = 5_000
GROUPS_PER_PAGE = 200
POLL_SECONDS = 0.1
#: Progress polls ask only for what is kept with the consumer offset: counting the
#: stored groups on every poll cost Correlation tens of milliseconds each time.
_PROGRESS = correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
#: Give up when Correlation's position and backlog stay unchanged this long.
STALL_SECONDS = 120.0


class ReplayError(RuntimeError):
    """The mesh refused the scenario or stopped making progress."""


@dataclass(frozen=True, slots=True)
class Addresses:
    ingest: str
    correlation: str
    topology: str


@dataclass(frozen=True, slots=True)
class Replay:
    groups: list[correlation_pb2.Group]
    events: int
    dependencies: int
    last_sequence: int
    #: From the first publish until Correlation is caught up and analysed.
    seconds: float


#: Called with (events consumed, events published so far).
Progress = Callable[[int, int], None]
#: Returns a description of what died in the mesh, or None when all is well.
Liveness = Callable[[], str | None]


def _describe(status: status_pb2.Status) -> str:
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [f"{v.field}: {v.description}" for v in bad.field_violations]
    return "; ".join(fields) or status.message


async def load_topology(channel: grpc.aio.Channel, scenario: Scenario) -> int:
    """Declares every topology edge in Topology; returns how many were upserted."""
    stub = topology_pb2_grpc.TopologyServiceStub(channel)
    declared = dependencies(scenario.topology)
    upserted = 0
    for start in range(0, len(declared), DEPENDENCIES_PER_CALL):
        part = declared[start : start + DEPENDENCIES_PER_CALL]
        reply = await stub.UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(dependencies=part)
        )
        upserted += reply.upserted_count
    return upserted


async def publish(
    channel: grpc.aio.Channel,
    batches: Sequence[Sequence[event_pb2.Event]],
    in_flight: int = IN_FLIGHT,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Publishes ``batches`` in order over one stream; returns the last log sequence.

    Fails when an event's sequence does not follow the previous one's (a reordered
    or repeated event), since the replay would then not be the scenario's stream.
    """
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    window = asyncio.Semaphore(in_flight)

    async def requests() -> AsyncIterator[ingest_pb2.PublishStreamRequest]:
        for number, batch in enumerate(batches):
            await window.acquire()
            yield ingest_pb2.PublishStreamRequest(request_id=str(number), events=batch)

    last = answered = 0
    async for response in stub.PublishStream(requests()):
        window.release()
        batch = batches[int(response.request_id)]
        for result in response.results:
            if result.HasField("error"):
                event_id = batch[result.index].event_id
                raise ReplayError(f"Ingest rejected event {event_id}: {_describe(result.error)}")
            if result.sequence <= last:
                # Correlation reads the log in sequence order: it must be the file's order.
                raise ReplayError(
                    f"event {batch[result.index].event_id} got log sequence {result.sequence} "
                    f"after {last}: Ingest's log is not in the scenario's order"
                )
            last = result.sequence
        answered += 1
        if on_batch is not None:
            on_batch(len(batch))
    if answered != len(batches):
        raise ReplayError(f"Ingest answered {answered} of {len(batches)} batches")
    return last


async def wait_until_current(
    channel: grpc.aio.Channel,
    last_sequence: int,
    alive: Liveness | None = None,
    on_poll: Callable[[correlation_pb2.GetStatsResponse], None] | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> None:
    """Returns once Correlation committed ``last_sequence`` and no group awaits analysis."""
    stub = correlation_pb2_grpc.CorrelationServiceStub(channel)
    seen: tuple[int, int] | None = None
    changed_at = time.monotonic()
    while True:
        stats = await stub.GetStats(_PROGRESS)
        if on_poll is not None:
            on_poll(stats)
        if stats.consumer_sequence >= last_sequence and stats.groups_awaiting_analysis == 0:
            return
        position = (stats.consumer_sequence, stats.groups_awaiting_analysis)
        now = time.monotonic()
        if position != seen:
            seen, changed_at = position, now
        elif now - changed_at > stall_seconds:
            raise ReplayError(
                f"Correlation made no progress for {stall_seconds:.0f} s (consumed up to "
                f"{stats.consumer_sequence} of {last_sequence}, "
                f"{stats.groups_awaiting_analysis} groups awaiting analysis)"
            )
        if alive is not None and (problem := alive()) is not None:
            raise ReplayError(problem)
        await asyncio.sleep(POLL_SECONDS)


async def list_all_groups(channel: grpc.aio.Channel) -> list[correlation_pb2.Group]:
    """Every group, whatever its status, type or domain, in creation order."""
    stub = correlation_pb2_grpc.CorrelationServiceStub(channel)
    groups: list[correlation_pb2.Group] = []
    token = ""
    while True:
        page = await stub.ListGroups(
            correlation_pb2.ListGroupsRequest(page_size=GROUPS_PER_PAGE, page_token=token)
        )
        groups.extend(page.groups)
        token = page.next_page_token
        if not token:
            return groups


async def replay(
    scenario: Scenario,
    addresses: Addresses,
    alive: Liveness | None = None,
    progress: Progress | None = None,
    batch_events: int = BATCH_EVENTS,
    in_flight: int = IN_FLIGHT,
) -> Replay:
    """Loads the topology, publishes the events, waits for Correlation, lists the groups."""
    events = [to_event(item) for item in scenario.events]
    batches = [events[i : i + batch_events] for i in range(0, len(events), batch_events)]
    published = 0

    def on_batch(count: int) -> None:
        nonlocal published
        published += count

    def on_poll(stats: correlation_pb2.GetStatsResponse) -> None:
        if progress is not None:
            progress(min(int(stats.consumer_sequence), len(events)), published)

    async with (
        open_channel(addresses.topology, traced=False) as topology,
        open_channel(addresses.ingest, traced=False) as ingest,
        open_channel(addresses.correlation, traced=False) as correlation,
    ):
        declared = await load_topology(topology, scenario)
        started = time.perf_counter()
        publishing = asyncio.create_task(publish(ingest, batches, in_flight, on_batch))
        try:
            # Report Correlation's progress while the stream is still being published.
            stats = correlation_pb2_grpc.CorrelationServiceStub(correlation)
            while not publishing.done():
                on_poll(await stats.GetStats(_PROGRESS))
                if alive is not None and (problem := alive()) is not None:
                    raise ReplayError(problem)
                await asyncio.wait({publishing}, timeout=0.5)
            last_sequence = publishing.result()
        finally:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
        await wait_until_current(correlation, last_sequence, alive, on_poll)
        seconds = time.perf_counter() - started
        groups = await list_all_groups(correlation)
    return Replay(groups, len(events), declared, last_sequence, seconds)
