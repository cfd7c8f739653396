"""GroupCommitWriter: grouping, ordering, failure and shutdown, against a stand-in log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from corrmesh.ingest.log import Appended, EventLog
from corrmesh.ingest.writer import GroupCommitWriter
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import event_pb2


class RecordingLog:
    """Assigns sequences like the real log and records each transaction."""

    def __init__(self) -> None:
        self.head = 0
        self.transactions: list[list[list[str]]] = []
        self.fail_next = False
        self.release = asyncio.Event()
        self.release.set()
        #: Set when a transaction has begun (and is held until ``release``).
        self.entered = asyncio.Event()

    async def append(self, batches: Sequence[Sequence[event_pb2.Event]]) -> list[list[Appended]]:
        self.entered.set()
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database went away")
        self.transactions.append([[e.event_id for e in batch] for batch in batches])
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
    await log.entered.wait()  # the writer took "a" alone and holds its commit
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
