"""Edits naming events Ingest has logged but Correlation has not consumed yet.

The consumer is held back by a test double around its batch handler (it reads
the batch, then waits for :attr:`_HeldCorrelation.flowing`), so "not consumed
yet" is a state the test sets up, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corrmesh.correlation import pending
from corrmesh.correlation.ingest_reader import IngestReader
from corrmesh.correlation.server import CorrelationApp
from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.settings import Settings
from corrmesh.v1 import correlation_pb2, ingest_pb2
from tests.support.correlation_events import event
from tests.support.correlation_mesh import TIMEOUT, Mesh, mesh

UNKNOWN_EVENT = "event (not in the window nor in any group)"


class _HeldCorrelation(CorrelationApp):
    """Correlation whose consumer handles a batch only while ``flowing`` is set,
    and which records the offsets edits wait for."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.waited_for: list[int] = []
        self.waiting = asyncio.Event()

    async def start(self) -> None:
        await super().start()
        # start() does not yield after creating the consumer's task, so both
        # doubles are in place before the consumer reads anything.
        assert self.consumer is not None
        handle, reached = self.consumer.handle, self.gate.reached

        async def held(response: ingest_pb2.SubscribeResponse) -> None:
            await self.flowing.wait()
            await handle(response)

        async def watched(sequence: int) -> None:
            self.waited_for.append(sequence)
            self.waiting.set()
            await reached(sequence)

        self.consumer.handle = held  # type: ignore[method-assign]
        self.gate.reached = watched  # type: ignore[method-assign]


def held(m: Mesh) -> _HeldCorrelation:
    assert isinstance(m.app, _HeldCorrelation)
    return m.app


def correlate(*event_ids: str) -> correlation_pb2.CorrelateEventsRequest:
    return correlation_pb2.CorrelateEventsRequest(event_ids=event_ids, reason="same outage")


async def consumer_sequence(m: Mesh) -> int:
    return (
        await m.correlation.GetStats(
            correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
        )
    ).consumer_sequence


async def error_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


def resource_of(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None
    info = error_details_pb2.ResourceInfo()
    (detail,) = status.details
    assert detail.Unpack(info)
    return info.resource_type, info.resource_name


def retry_delay_of(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    (detail,) = status.details
    assert detail.Unpack(retry)
    return retry.retry_delay.ToNanoseconds() / 1e9


async def consumed_one_and_held_one(m: Mesh) -> int:
    """Publishes "seen" and lets it be consumed, then holds the consumer and
    publishes "late"; returns late's sequence, proven not consumed."""
    (seen,) = await m.publish(event(0, event_id="seen"))
    await m.consumed(seen)
    held(m).flowing.clear()
    (late,) = await m.publish(event(1, event_id="late"))
    assert await consumer_sequence(m) < late
    return late


async def test_an_edit_waits_for_an_event_ingest_logged_until_it_is_consumed(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path, _HeldCorrelation) as m:
        late = await consumed_one_and_held_one(m)
        call = asyncio.ensure_future(m.correlation.CorrelateEvents(correlate("seen", "late")))
        waiting = asyncio.ensure_future(held(m).waiting.wait())
        done, _ = await asyncio.wait(
            {call, waiting}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        assert waiting in done and not call.done(), "the edit answered instead of waiting"
        assert held(m).waited_for == [late]
        assert await consumer_sequence(m) < late, "still held: the edit cannot have run yet"

        held(m).flowing.set()
        reply = await asyncio.wait_for(call, TIMEOUT)
        assert {member.event_id for member in reply.group.members} == {"seen", "late"}
        (edge,) = reply.group.edges
        assert (edge.strategy, edge.reason) == ("manual", "correlated by hand: same outage")
        assert await consumer_sequence(m) >= late
        stored = await m.correlation.GetGroupForEvent(
            correlation_pb2.GetGroupForEventRequest(event_id="late")
        )
        assert stored.group.group_id == reply.group.group_id


async def test_an_id_ingest_never_had_is_not_found_without_waiting(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path, _HeldCorrelation) as m:
        await consumed_one_and_held_one(m)
        # "late" alone would be waited for; "ghost" makes the edit hopeless at once.
        error = await error_of(
            m.correlation.CorrelateEvents(correlate("seen", "late", "ghost"), timeout=TIMEOUT)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert resource_of(error) == (UNKNOWN_EVENT, "ghost")
        assert held(m).waited_for == []
        held(m).flowing.set()


async def test_the_wait_is_bounded_and_then_unavailable(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mesh(database_url, tmp_path, _HeldCorrelation) as m:
        late = await consumed_one_and_held_one(m)
        monkeypatch.setattr(pending, "MAX_WAIT_SECONDS", 0.3)
        error = await error_of(
            m.correlation.CorrelateEvents(correlate("seen", "late"), timeout=TIMEOUT)
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "not consumed yet" in (error.details() or "")
        assert retry_delay_of(error) == pending.RETRY_AFTER_SECONDS
        assert held(m).waited_for == [late]

        # The caller's deadline bounds the wait too: the answer comes before it.
        monkeypatch.setattr(pending, "MAX_WAIT_SECONDS", 60.0)
        error = await error_of(
            m.correlation.CorrelateEvents(correlate("seen", "late"), timeout=2.0)
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE

        # Nothing was changed meanwhile: once consumed, the same edit succeeds.
        held(m).flowing.set()
        reply = await m.correlation.CorrelateEvents(correlate("seen", "late"), timeout=TIMEOUT)
        assert {member.event_id for member in reply.group.members} == {"seen", "late"}


async def test_unknown_ids_are_not_found_when_ingest_cannot_be_asked(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=pending.__name__)
    async with mesh(database_url, tmp_path, _HeldCorrelation) as m:
        await consumed_one_and_held_one(m)
        servicer = m.app.servicer
        assert servicer is not None
        dead = open_channel(f"127.0.0.1:{_closed_port()}", traced=False)
        servicer.ingest_events = IngestReader(dead)
        try:
            error = await error_of(
                m.correlation.CorrelateEvents(correlate("seen", "late", "ghost"), timeout=TIMEOUT)
            )
        finally:
            await dead.close()
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert resource_of(error) == (UNKNOWN_EVENT, "late")
        assert held(m).waited_for == []
        warnings = [r for r in caplog.records if r.name == pending.__name__]
        assert [r.levelno for r in warnings] == [logging.WARNING]
        assert not [r for r in warnings if "ghost" in r.getMessage() or "late" in r.getMessage()]
        held(m).flowing.set()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
