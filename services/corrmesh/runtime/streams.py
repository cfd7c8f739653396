"""Resumable streams over a sequence-ordered, durable log.

Ingest's event log, Correlation's group-update log and Topology's change log
are all served the same way: a subscriber names the last sequence it
processed, reads from the store until it has caught up, then waits for the
writer to announce a new head. Each subscriber reads at its own pace from the
store, so a slow one holds no buffer in the writer and cannot stall it or the
others; it simply falls further behind and catches up from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_BATCH = 500
MAX_BATCH = 10_000
#: Wake followers this often even when nothing was announced, so a stream
#: notices shutdown and a quiet store is re-checked.
IDLE_RECHECK_SECONDS = 1.0


class HeadNotifier:
    """The writer's side: announces the newest committed sequence."""

    def __init__(self, head: int = 0) -> None:
        self.head = head
        self._changed = asyncio.Event()

    def announce(self, head: int) -> None:
        """Call after a commit; wakes every follower."""
        if head > self.head:
            self.head = head
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_beyond(self, sequence: int, timeout: float) -> None:
        """Returns when the head passes ``sequence`` or after ``timeout``."""
        if self.head > sequence:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)


def clamp_batch(requested: int) -> int:
    """The batch size to use for a client's ``max_batch_size`` (0 means default)."""
    if requested <= 0:
        return DEFAULT_BATCH
    return min(requested, MAX_BATCH)


class Batch(Generic[T]):
    """Items read from the store, and how far the read went (matched or not)."""

    __slots__ = ("items", "through")

    def __init__(self, items: Sequence[T], through: int) -> None:
        self.items = items
        self.through = through


async def follow(
    read_after: Callable[[int, int], Awaitable[Batch[T]]],
    after: int,
    notifier: HeadNotifier,
    stopping: asyncio.Event,
    batch_size: int,
    heartbeat_seconds: float = 10.0,
) -> AsyncIterator[Batch[T]]:
    """Yields batches after ``after`` until ``stopping`` is set.

    ``read_after(after, limit)`` returns matching items with sequence > after
    and ``through``, the highest sequence it looked at. An empty batch is
    yielded when the position moved without a match, and as a heartbeat on a
    quiet stream, so a filtering subscriber can still save its position.
    """
    position = after
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while not stopping.is_set():
        batch = await read_after(position, batch_size)
        moved = batch.through > position
        if batch.items or moved:
            position = max(position, batch.through)
            last_sent = loop.time()
            yield batch
            if moved:
                continue
        if loop.time() - last_sent >= heartbeat_seconds:
            last_sent = loop.time()
            yield Batch([], position)
        waiter = asyncio.ensure_future(notifier.wait_beyond(position, IDLE_RECHECK_SECONDS))
        stop_waiter = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({waiter, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop_waiter.cancel()
