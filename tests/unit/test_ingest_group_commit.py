"""GroupCommitWriter: grouping, ordering, failure and shutdown, against a stand-in log."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence, Set
from typing import cast

import pytest

from corrmesh.ingest.log import Appended, EventLog
from corrmesh.ingest.writer import GroupCommitWriter
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import event_pb2


class RecordingLog:
    """Assigns sequences like the real log and records each transaction.

    The writer calls it from its own thread, so the gates are thread events.
    """

    def __init__(self) -> None:
        self.head = 0
        self.transactions: list[list[list[str]]] = []
        #: The ids each transaction was told are new (not to look up).
        self.new_ids: list[Set[str]] = []
        #: The thread each transaction ran in.
        self.threads: list[str] = []
        self.fail_next = False
        self.release = threading.Event()
        self.release.set()
        #: Set when a transaction has begun (and is held until ``release``).
        self.entered = threading.Event()

    def append_blocking(
        self, batches: Sequence[Sequence[event_pb2.Event]], new_ids: Set[str] = frozenset()
    ) -> list[list[Appended]]:
        self.entered.set()
        assert self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database went away")
        self.transactions.append([[e.event_id for e in batch] for batch in batches])
        self.new_ids.append(new_ids)
        self.threads.append(threading.current_thread().name)
        results = []
        for batch in batches:
            out = []
            for event in batch:
                self.head += 1
                out.append(Appended(self.head, event.event_id, event.correlation_id, False))
            results.append(out)
        return results


def _events(*ids: str) -> list[event_pb2.Event]:
    return [event_pb2.Event(event_id=i) for i in ids]


def _writer(log: RecordingLog, notifier: HeadNotifier, **options: int) -> GroupCommitWriter:
    return GroupCommitWriter(cast(EventLog, log), notifier, **options)


async def test_batches_pending_together_share_one_commit_in_submit_order() -> None:
    log, notifier = RecordingLog(), HeadNotifier()
    writer = _writer(log, notifier)
    writer.start()
    log.release.clear()  # hold the first commit so the others queue behind it
    first = writer.submit(_events("a"))
    await asyncio.to_thread(log.entered.wait, 10)  # the writer took "a" alone and holds it
    rest = [writer.submit(_events(f"b{i}", f"c{i}")) for i in range(3)]
    log.release.set()

    assert [r.sequence for r in await first] == [1]
    assert [[r.sequence for r in await f] for f in rest] == [[2, 3], [4, 5], [6, 7]]
    assert log.transactions == [[["a"]], [["b0", "c0"], ["b1", "c1"], ["b2", "c2"]]]
    assert writer.commits == 2
    assert notifier.head == 7
    await writer.stop()


async def test_caps_split_groups() -> None:
    log = RecordingLog()
    writer = _writer(log, HeadNotifier(), max_group_batches=1)
    log.release.clear()
    writer.start()
    futures = [writer.submit(_events(f"e{i}")) for i in range(3)]
    log.release.set()
    await asyncio.gather(*futures)
    assert log.transactions == [[["e0"]], [["e1"]], [["e2"]]]

    by_size = RecordingLog()
    sized = _writer(by_size, HeadNotifier(), max_group_events=3)
    by_size.release.clear()
    sized.start()
    futures = [sized.submit(_events(f"x{i}", f"y{i}")) for i in range(3)]
    by_size.release.set()
    await asyncio.gather(*futures)
    # A group closes once it holds at least max_group_events.
    assert [len(t) for t in by_size.transactions] == [2, 1]
    await writer.stop()
    await sized.stop()


async def test_a_failed_commit_fails_its_callers_and_the_writer_goes_on() -> None:
    log, notifier = RecordingLog(), HeadNotifier()
    writer = _writer(log, notifier)
    log.release.clear()
    writer.start()
    log.fail_next = True
    doomed = [writer.submit(_events("a")), writer.submit(_events("b"))]
    log.release.set()
    for future in doomed:
        with pytest.raises(RuntimeError):
            await future
    assert notifier.head == 0

    assert [r.sequence for r in await writer.submit(_events("c"))] == [1]
    assert writer.running
    await writer.stop()


async def test_a_cancelled_caller_does_not_break_the_group() -> None:
    log = RecordingLog()
    writer = _writer(log, HeadNotifier())
    log.release.clear()
    writer.start()
    gone = writer.submit(_events("a"))
    kept = writer.submit(_events("b"))
    gone.cancel()
    log.release.set()
    assert [r.sequence for r in await kept] == [2]
    # The cancelled caller's events were still committed; a retry is a duplicate.
    assert log.transactions == [[["a"], ["b"]]]
    await writer.stop()


async def test_stop_commits_what_is_pending_and_then_refuses() -> None:
    log = RecordingLog()
    writer = _writer(log, HeadNotifier())
    writer.start()
    pending = [writer.submit(_events("a")), writer.submit(_events("b"))]
    await writer.stop()
    assert [[r.sequence for r in await f] for f in pending] == [[1], [2]]
    assert not writer.running
    with pytest.raises(RuntimeError):
        await writer.submit(_events("late"))
    assert await writer.submit([]) == []


async def test_threads_share_groups_with_loop_callers_and_pass_on_new_ids() -> None:
    log, notifier = RecordingLog(), HeadNotifier()
    writer = _writer(log, notifier)
    writer.start()
    log.release.clear()
    first = writer.submit(_events("a"))
    await asyncio.to_thread(log.entered.wait, 10)
    from_thread = await asyncio.to_thread(writer.submit_blocking, _events("t1"), frozenset({"t1"}))
    from_loop = writer.submit(_events("l1"), frozenset({"l1"}))
    log.release.set()

    assert [r.sequence for r in await asyncio.to_thread(from_thread.result, 10)] == [2]
    assert [r.sequence for r in await from_loop] == [3]
    assert [r.sequence for r in await first] == [1]
    assert log.transactions == [[["a"]], [["t1"], ["l1"]]]
    assert log.new_ids[1] == {"t1", "l1"}
    assert notifier.head == 3
    await writer.stop()
    with pytest.raises(RuntimeError):
        writer.submit_blocking(_events("late")).result(1)


async def test_a_lone_thread_commits_in_its_own_thread_and_leaves_the_rest_to_the_writer() -> None:
    log, notifier = RecordingLog(), HeadNotifier()
    writer = _writer(log, notifier)
    writer.start()

    def alone() -> list[int]:
        threading.current_thread().name = "scp-association"
        future = writer.submit_blocking(_events("s1"), frozenset({"s1"}))
        assert future.done(), "committed before submit_blocking returned"
        return [r.sequence for r in future.result()]

    assert await asyncio.to_thread(alone) == [1]
    # While a thread commits, others queue; the writer thread commits them next.
    log.release.clear()
    holder = asyncio.create_task(asyncio.to_thread(alone))
    await asyncio.to_thread(log.entered.wait, 10)
    log.entered.clear()
    queued = await asyncio.to_thread(writer.submit_blocking, _events("q1"))
    from_loop = writer.submit(_events("l1"))
    assert not queued.done()
    log.release.set()

    assert await holder == [2]
    assert [r.sequence for r in await asyncio.to_thread(queued.result, 10)] == [3]
    assert [r.sequence for r in await from_loop] == [4]
    assert log.transactions == [[["s1"]], [["s1"]], [["q1"], ["l1"]]]
    assert log.threads == ["scp-association", "scp-association", "ingest-group-commit"]
    await writer.stop()
