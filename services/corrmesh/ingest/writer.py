"""Group commit: one writer task commits the pending batches of all callers at once.

Every Publish and PublishStream call hands its accepted events to
:meth:`GroupCommitWriter.submit` and awaits the returned future. The writer
task takes everything pending (up to a cap), appends it in one transaction,
resolves each caller's future after the commit and announces the new head to
subscribers. Under concurrency that is one fsync for many calls instead of
one each; a lone caller pays nothing extra, since the writer starts a commit
as soon as anything is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from corrmesh.ingest.log import Appended, EventLog
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import event_pb2

log = logging.getLogger(__name__)

#: Most events per transaction; a group closes once it holds this many.
DEFAULT_MAX_GROUP_EVENTS = 20_000


@dataclass(slots=True)
class _Pending:
    events: Sequence[event_pb2.Event]
    done: asyncio.Future[list[Appended]]


class GroupCommitWriter:
    """The single writer of an :class:`EventLog`.

    ``max_group_batches=1`` commits each caller's batch on its own (what the
    group commit is measured against).
    """

    def __init__(
        self,
        event_log: EventLog,
        notifier: HeadNotifier,
        max_group_events: int = DEFAULT_MAX_GROUP_EVENTS,
        max_group_batches: int = 0,
    ) -> None:
        self._log = event_log
        self._notifier = notifier
        self._max_events = max_group_events
        self._max_batches = max_group_batches
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: Transactions committed so far (for tests and metrics).
        self.commits = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-group-commit")

    async def stop(self) -> None:
        """Commits what is pending, then ends the writer task."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def submit(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[list[Appended]]:
        """Queues ``events`` for the next commit; the future resolves after it.

        Batches are committed in the order they were submitted.
        """
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        if not events:
            future.set_result([])
        elif not self.running:
            future.set_exception(RuntimeError("the event log writer is not running"))
        else:
            self._queue.put_nowait(_Pending(events, future))
        return future

    def _take_group(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """``first`` plus whatever else is pending, within the caps; True when stop was asked."""
        group = [first]
        count = len(first.events)
        while count < self._max_events and not self._queue.empty():
            if self._max_batches and len(group) >= self._max_batches:
                break
            item = self._queue.get_nowait()
            if item is None:
                return group, True
            group.append(item)
            count += len(item.events)
        return group, False

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            group, stop = self._take_group(first)
            try:
                results = await self._log.append([p.events for p in group])
            except Exception as exc:
                # The whole transaction rolled back: every caller in it fails
                # (and may retry; event ids make the retry safe).
                log.exception("event log commit failed", extra={"batches": len(group)})
                for pending in group:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                continue
            self.commits += 1
            for pending, result in zip(group, results, strict=True):
                # A caller that went away (cancelled RPC) just misses its result.
                if not pending.done.done():
                    pending.done.set_result(result)
            self._notifier.announce(self._log.head)
