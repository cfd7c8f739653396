"""Group commit: whoever commits takes the pending batches of all callers at once.

Every Publish and PublishStream call hands its accepted events to
:meth:`GroupCommitWriter.submit` and awaits the returned future; a writer
thread commits for them. The edge adapters, which run in threads of their
own (pynetdicom's), use :meth:`GroupCommitWriter.submit_blocking`: when no
commit is under way, the calling thread commits itself, everything pending
included; otherwise it waits, and the commit after the current one (the
writer thread's) takes its batch along. A commit appends the group in one
transaction, resolves each caller's future and announces the new head to
subscribers. Under concurrency that is one fsync for many calls instead of
one each; a lone caller pays nothing extra.

Committing in the caller's thread matters for the SCP: a hand-over to
another thread and back costs two wake-ups per instance, each a wait for a
core on a busy machine, more than the commit itself. Loop-side callers are
resolved with one callback per group.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence, Set
from dataclasses import dataclass

from corrmesh.ingest.log import Appended, EventLog
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import event_pb2

log = logging.getLogger(__name__)

#: Most events per transaction; a group closes once it holds this many.
DEFAULT_MAX_GROUP_EVENTS = 20_000

_Future = asyncio.Future[list[Appended]] | concurrent.futures.Future[list[Appended]]
_LoopItems = list[tuple[asyncio.Future[list[Appended]], list[Appended] | None]]


@dataclass(slots=True)
class _Pending:
    events: Sequence[event_pb2.Event]
    #: Event ids this server just assigned: no need to look them up as duplicates.
    new_ids: Set[str]
    done: _Future


class GroupCommitWriter:
    """The single writer of an :class:`EventLog` (one commit at a time, in order).

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
        self._pending: deque[_Pending] = deque()
        self._pending_lock = threading.Lock()
        #: Held by whoever commits: groups are taken and committed in order.
        self._commit_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        #: Transactions committed so far (for tests and metrics).
        self.commits = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        """Starts the writer thread; call from the event loop that awaits commits."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ingest-group-commit", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Commits what is pending, then ends the writer thread."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def submit(
        self, events: Sequence[event_pb2.Event], new_ids: Set[str] = frozenset()
    ) -> asyncio.Future[list[Appended]]:
        """From the event loop: queues ``events`` for the next commit; the future resolves after it.

        Batches are committed in the order they were submitted.
        """
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        if self._enqueue(events, new_ids, future):
            self._wake.set()
        return future

    def submit_blocking(
        self, events: Sequence[event_pb2.Event], new_ids: Set[str] = frozenset()
    ) -> concurrent.futures.Future[list[Appended]]:
        """From any thread but the loop's: like :meth:`submit`, with a thread future.

        Commits in the calling thread when nobody else is committing, so the
        future is often done on return.
        """
        future: concurrent.futures.Future[list[Appended]] = concurrent.futures.Future()
        if self._enqueue(events, new_ids, future) and self._commit_lock.acquire(blocking=False):
            try:
                self._commit_group()
            finally:
                self._commit_lock.release()
            self._hand_over()
        # Otherwise the commit under way hands what is left to the writer thread.
        return future

    def _enqueue(
        self, events: Sequence[event_pb2.Event], new_ids: Set[str], future: _Future
    ) -> bool:
        """True when ``events`` now wait for a commit."""
        if not events:
            future.set_result([])
        elif not self.running:
            future.set_exception(RuntimeError("the event log writer is not running"))
        else:
            with self._pending_lock:
                self._pending.append(_Pending(events, new_ids, future))
            return True
        return False

    def _hand_over(self) -> None:
        """After releasing the commit lock: batches that queued meanwhile go to the thread."""
        if self._pending:
            self._wake.set()

    def _take_group(self) -> list[_Pending]:
        """The oldest pending batches, within the caps."""
        group: list[_Pending] = []
        count = 0
        with self._pending_lock:
            while self._pending and count < self._max_events:
                if self._max_batches and len(group) >= self._max_batches:
                    break
                item = self._pending.popleft()
                group.append(item)
                count += len(item.events)
        return group

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            stopping = self._stopping  # read first: what was queued before it is drained
            while self._pending:
                with self._commit_lock:
                    self._commit_group()
            if stopping:
                break

    def _commit_group(self) -> None:
        """Commits one group; call holding the commit lock."""
        group = self._take_group()
        if not group:
            return
        new_ids: Set[str] = (
            group[0].new_ids if len(group) == 1 else frozenset().union(*(p.new_ids for p in group))
        )
        try:
            results = self._log.append_blocking([p.events for p in group], new_ids)
        except Exception as exc:
            # The whole transaction rolled back: every caller in it fails
            # (and may retry; event ids make the retry safe).
            log.exception("event log commit failed", extra={"batches": len(group)})
            self._resolve(group, exc, None)
            return
        self.commits += 1
        self._resolve(group, None, results)

    def _resolve(
        self,
        group: list[_Pending],
        error: BaseException | None,
        results: list[list[Appended]] | None,
    ) -> None:
        on_loop: _LoopItems = []
        for index, pending in enumerate(group):
            result = results[index] if results is not None else None
            if isinstance(pending.done, asyncio.Future):
                on_loop.append((pending.done, result))
            elif result is not None:
                pending.done.set_result(result)
            else:
                pending.done.set_exception(error or RuntimeError("commit failed"))
        head = self._log.head if results is not None else None
        if (on_loop or head is not None) and self._loop is not None:
            # RuntimeError: the loop is closed, nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._resolve_on_loop, on_loop, error, head)

    def _resolve_on_loop(
        self, items: _LoopItems, error: BaseException | None, head: int | None
    ) -> None:
        for future, result in items:
            # A caller that went away (cancelled RPC) just misses its result.
            if future.done():
                continue
            if result is not None:
                future.set_result(result)
            else:
                future.set_exception(error or RuntimeError("commit failed"))
        if head is not None:
            self._notifier.announce(head)
