"""What reflector threads hand to the event loop, and the hand-over itself.

Reflectors block on HTTP in threads; the graph is only touched on the event
loop. An :class:`Inbox` is a bounded, thread-safe queue that wakes the loop
once per empty-to-non-empty transition (not once per item, which would cost a
cross-thread call per watch event) and makes a reflector wait while it is
full, so a slow loop slows the watches rather than growing memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from corrmesh.topology.kube.kinds import ServedKind

#: Items buffered before reflectors wait.
DEFAULT_CAPACITY = 50_000


@dataclass(frozen=True)
class Replace:
    """A complete list of one kind: the cluster's view of it, to apply as one."""

    cluster: str
    served: ServedKind
    objects: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True)
class Delta:
    """One watch event: ADDED, MODIFIED or DELETED."""

    cluster: str
    served: ServedKind
    type: str
    object: dict[str, Any]


@dataclass(frozen=True)
class KindState:
    """How the sync of one kind stands ("synced", "forbidden", ...)."""

    cluster: str
    kind: str
    state: str
    detail: str = ""


Item = Replace | Delta | KindState


class Inbox:
    """Items from threads, drained in batches on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int = DEFAULT_CAPACITY) -> None:
        self._loop = loop
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._condition = threading.Condition()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, item: Item) -> None:
        """Adds ``item`` (from any thread); waits while the inbox is full."""
        with self._condition:
            while len(self._items) >= self._capacity and not self._closed:
                self._condition.wait(0.5)
            if self._closed:
                return
            wake = not self._items
            self._items.append(item)
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is gone: the server is stopping
                self.close()

    async def wait(self) -> None:
        """Returns when items are waiting (on the loop)."""
        await self._ready.wait()

    def drain(self, limit: int = 10_000) -> list[Item]:
        """Up to ``limit`` items, oldest first (on the loop)."""
        with self._condition:
            count = min(limit, len(self._items))
            items = [self._items.popleft() for _ in range(count)]
            if not self._items:
                self._ready.clear()
            self._condition.notify_all()
        return items

    def close(self) -> None:
        """Stops accepting items and releases waiting reflectors."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
