"""One writer at a time on the engine: the stream, the quiet-stream clock, operators.

Every change to the engine's state happens under :attr:`EngineGate.lock` and
ends in :meth:`EngineGate.commit`, which writes what changed together with the
Ingest offset it belongs to. A failure anywhere reloads the engine from the
store, so memory never runs ahead of what is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from corrmesh.correlation.config import duration_us
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.metrics import CorrelationMetrics
from corrmesh.correlation.store import CorrelationStore
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import correlation_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The stream counts as quiet after this long without an event; then the
#: watermark follows the wall clock (DESIGN.md, Time).
QUIET_SECONDS = 5.0
CLOCK_PERIOD_SECONDS = 1.0


class EngineGate:
    """Serialises access to the engine and commits each change with its offset."""

    def __init__(
        self,
        engine: CorrelationEngine,
        store: CorrelationStore,
        notifier: HeadNotifier,
        metrics: CorrelationMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.lock = asyncio.Lock()
        #: Last Ingest sequence whose effects are committed.
        self.offset = 0
        #: Set (and replaced) whenever the offset is written, for :meth:`reached`.
        self._offset_written = asyncio.Event()
        self.last_activity = time.monotonic()
        #: Called with each commit's updates, after they are durable.
        self.on_commit: Callable[[Sequence[correlation_pb2.GroupUpdate]], None] | None = None

    async def recover(self) -> None:
        """Reloads the offset and the engine's state from the store."""
        config = self.engine.config
        offset, state = await asyncio.to_thread(
            self.store.load_state,
            duration_us(config.temporal_window),
            duration_us(config.allowed_lateness),
        )
        self.engine.restore(state)
        self._set_offset(offset)
        self.notifier.announce(state.next_sequence - 1)

    async def commit(self, through: int) -> None:
        """Writes the engine's changes with the offset ``through`` (caller holds the lock)."""
        changes = self.engine.take_changes()
        await asyncio.to_thread(self.store.commit_batch, changes, through)
        self.engine.committed()
        self._set_offset(through)
        if self.metrics is not None:
            engine = self.engine
            self.metrics.committed(engine.events_in, engine.groups_created, engine.matches)
        self.last_activity = time.monotonic()
        if changes.updates:
            self.notifier.announce(changes.updates[-1].sequence)
            if self.on_commit is not None:
                self.on_commit(changes.updates)

    def _set_offset(self, offset: int) -> None:
        self.offset = offset
        self._offset_written.set()
        self._offset_written = asyncio.Event()

    async def reached(self, sequence: int) -> None:
        """Returns once the committed offset is at least ``sequence``.

        Waits without the lock (the consumer needs it to get there); callers
        bound the wait themselves.
        """
        while self.offset < sequence:
            await self._offset_written.wait()

    async def edit(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Runs an operator's edit between two batches and commits it.

        An operation raises LookupError only before it changes anything (a
        name that does not exist); any other failure reloads the engine.
        """
        async with self.lock:
            try:
                result = await operation()
                await self.commit(self.offset)
                return result
            except LookupError:
                raise
            except BaseException:
                await self.recover()
                raise

    async def run_clock(self, stopping: asyncio.Event) -> None:
        """While the stream is quiet, moves event time on with the wall clock."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), CLOCK_PERIOD_SECONDS)
                return
            except TimeoutError:
                pass
            if time.monotonic() - self.last_activity < QUIET_SECONDS or self.lock.locked():
                continue
            async with self.lock:
                try:
                    self.engine.tick(time.time_ns() // 1000)
                    await self.commit(self.offset)
                except Exception:
                    log.exception("clock tick failed; reloading state from the store")
                    await self.recover()
