"""Edits that name events Ingest has logged but Correlation has not consumed yet.

A client may publish an event and name it in an edit at once: the event is
durable in Ingest's log (it has a sequence) while the consumer has not read
that far. Such an edit waits, bounded by the call's deadline and
:data:`MAX_WAIT_SECONDS`, until the committed offset reaches the highest of
those sequences, then runs as usual. An id Ingest does not hold either is
unknown at once, without waiting; when Ingest cannot be asked, unknown ids are
answered as unknown too (and the failure logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.ingest_reader import IngestReader

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest an edit waits for the consumer to reach its events.
MAX_WAIT_SECONDS = 10.0
#: Kept from the caller's deadline, so the answer reaches it before the deadline does.
DEADLINE_MARGIN_SECONDS = 0.2
#: Deadline of the GetEvent calls asking Ingest about unknown ids.
LOOKUP_TIMEOUT_SECONDS = 5.0
#: The delay UNAVAILABLE suggests before a retry.
RETRY_AFTER_SECONDS = 1.0


class UnknownEventsError(LookupError):
    """An edit named events neither in the engine's window nor in any group.

    Raised by an edit before it changes anything (a LookupError, so the gate
    does not reload); ``event_ids`` keeps the request's order.
    """

    def __init__(self, event_ids: Sequence[str]) -> None:
        super().__init__(f"{len(event_ids)} events neither in the window nor in any group")
        self.event_ids = list(event_ids)


class NotConsumedError(Exception):
    """Ingest holds the events, but the consumer did not reach them within the wait."""

    def __init__(self, count: int, needed: int, offset: int) -> None:
        super().__init__(
            f"{count} of the events are not consumed yet: Correlation has read Ingest's log"
            f" through sequence {offset} and needs {needed}; retry later"
        )
        self.needed, self.offset = needed, offset


def _bound(
    ceiling: float, time_remaining: Callable[[], float | None], margin: float = 0.0
) -> float:
    """``ceiling``, or less when the call's deadline comes sooner."""
    remaining = time_remaining()
    if remaining is None:
        return ceiling
    return max(0.0, min(ceiling, remaining - margin))


async def _logged_sequences(
    reader: IngestReader | None, event_ids: Sequence[str], timeout: float
) -> dict[str, int] | None:
    """Ingest's sequence of each id it holds; None (logged once) when it cannot be asked."""
    if reader is None:
        log.warning("Ingest is not connected yet; unknown events in an edit are NOT_FOUND")
        return None
    try:
        return await reader.sequences_of(event_ids, timeout)
    except grpc.aio.AioRpcError as error:
        # Counts and codes only: an event's contents never reach the log.
        log.warning(
            "Ingest cannot be asked about the events an edit names; unknown ones are NOT_FOUND",
            extra={"code": error.code().name, "events": len(event_ids)},
        )
        return None


async def edit_when_consumed(
    gate: EngineGate,
    reader: IngestReader | None,
    operation: Callable[[], Awaitable[T]],
    time_remaining: Callable[[], float | None],
) -> T:
    """Runs ``operation`` through the gate, waiting first for unconsumed events it names.

    ``operation`` raises :class:`UnknownEventsError` for events Correlation
    does not know. Those Ingest holds are waited for (without the gate's lock)
    and the operation runs once more; ``time_remaining`` is the call's
    remaining deadline (None: none). Raises UnknownEventsError for ids Ingest
    does not hold either (or cannot be asked about, or that are still unknown
    once consumed), and :class:`NotConsumedError` when the wait runs out.
    """
    try:
        return await gate.edit(operation)
    except UnknownEventsError as unknown:
        missing = unknown.event_ids
    lookup = _bound(LOOKUP_TIMEOUT_SECONDS, time_remaining)
    sequences = await _logged_sequences(reader, missing, lookup)
    if sequences is None:
        raise UnknownEventsError(missing)
    absent = [event_id for event_id in missing if event_id not in sequences]
    if absent:
        raise UnknownEventsError(absent)
    needed = max(sequences.values())
    if gate.offset < needed:
        try:
            wait = _bound(MAX_WAIT_SECONDS, time_remaining, DEADLINE_MARGIN_SECONDS)
            async with asyncio.timeout(wait):
                await gate.reached(needed)
        except TimeoutError:
            behind = sum(1 for sequence in sequences.values() if sequence > gate.offset)
            raise NotConsumedError(behind, needed, gate.offset) from None
    return await gate.edit(operation)
