"""Reads events back from Ingest's log (``IngestService.ListEvents``) for analysis,
and looks single events up (``GetEvent``) for manual edits.

Correlation keeps groups, not the events' processing details: timelines and
performance figures are computed from the events themselves, read page by
page from Ingest. A read is bounded: past :attr:`IngestReader.max_events`
it stops with :class:`TooManyEventsError` instead of holding an unbounded
answer in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import timestamp_pb2

from corrmesh.correlation.rows import chunks
from corrmesh.ingest.validation import MAX_FILTER_VALUES
from corrmesh.runtime.paging import MAX_PAGE_SIZE
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc

#: Most events one read may return.
DEFAULT_MAX_EVENTS = 50_000
#: Deadline of one ListEvents page.
PAGE_TIMEOUT_SECONDS = 10.0
#: GetEvent calls in flight at once for one lookup.
MAX_LOOKUPS_IN_FLIGHT = 16


class TooManyEventsError(Exception):
    """More events match than one read may return."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} events match")
        self.limit = limit


@dataclass
class IngestReader:
    """Pages through ListEvents on ``channel``; raises grpc.aio.AioRpcError when Ingest fails."""

    channel: grpc.aio.Channel
    max_events: int = DEFAULT_MAX_EVENTS
    page_size: int = MAX_PAGE_SIZE

    async def for_correlations(self, correlation_ids: Sequence[str]) -> list[event_pb2.Event]:
        """Every event of ``correlation_ids`` (none for an empty list), in log order."""
        events: list[event_pb2.Event] = []
        # Ingest caps the values of one filter field; larger lists go in turns.
        for part in chunks(list(correlation_ids), MAX_FILTER_VALUES):
            wanted = ingest_pb2.EventFilter(correlation_ids=part)
            events.extend(await self._read(wanted, self.max_events - len(events)))
        if len(correlation_ids) > MAX_FILTER_VALUES:
            events.sort(key=lambda event: event.sequence)
        return events

    async def in_range(
        self,
        start: timestamp_pb2.Timestamp,
        end: timestamp_pb2.Timestamp,
        domains: Sequence[event_pb2.Domain.ValueType] = (),
    ) -> list[event_pb2.Event]:
        """Events with ``start <= occurred_at < end`` (of ``domains``, when given)."""
        wanted = ingest_pb2.EventFilter(domains=domains, occurred_after=start, occurred_before=end)
        return await self._read(wanted, self.max_events)

    async def sequences_of(
        self, event_ids: Sequence[str], timeout: float = PAGE_TIMEOUT_SECONDS
    ) -> dict[str, int]:
        """The log sequence of each of ``event_ids`` Ingest holds; the others are absent.

        ``timeout`` bounds each GetEvent call. Any failure but NOT_FOUND raises.
        """
        stub = ingest_pb2_grpc.IngestServiceStub(self.channel)
        room = asyncio.Semaphore(MAX_LOOKUPS_IN_FLIGHT)

        async def sequence(event_id: str) -> int | None:
            async with room:
                try:
                    found = await stub.GetEvent(
                        ingest_pb2.GetEventRequest(event_id=event_id), timeout=timeout
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.NOT_FOUND:
                        return None
                    raise
            return int(found.event.sequence)

        # Every lookup ends before a failure is raised: none is left running unread.
        answers = await asyncio.gather(
            *(sequence(event_id) for event_id in event_ids), return_exceptions=True
        )
        found: dict[str, int] = {}
        for event_id, answer in zip(event_ids, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            if answer is not None:
                found[event_id] = answer
        return found

    async def _read(self, wanted: ingest_pb2.EventFilter, room: int) -> list[event_pb2.Event]:
        stub = ingest_pb2_grpc.IngestServiceStub(self.channel)
        events: list[event_pb2.Event] = []
        token = ""
        while True:
            page = await stub.ListEvents(
                ingest_pb2.ListEventsRequest(
                    filter=wanted, page_size=min(self.page_size, room + 1), page_token=token
                ),
                timeout=PAGE_TIMEOUT_SECONDS,
            )
            events.extend(page.events)
            if len(events) > room:
                raise TooManyEventsError(self.max_events)
            token = page.next_page_token
            if not token:
                return events
