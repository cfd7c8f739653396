"""A few established associations kept per source for the next C-FIND.

Setting an association up costs a TCP connect, an A-ASSOCIATE round trip and
two pynetdicom threads, and releasing it as much again: several milliseconds
per source on every spanning query. The pool lends an idle association to one
caller at a time. The caller gives it back only after a complete C-FIND and
ends it after anything else, so a failed, timed-out or cancelled operation
never leaves a half-used association for the next one.

Idle associations are released after ``idle_seconds`` (below the idle timeouts
PACS apply on their side: Orthanc's ``DicomScpTimeout`` is 30 s by default),
and at most ``max_idle`` are kept per key, so a burst of concurrent queries
does not leave as many open associations at a PACS that counts them. A kept
association is not free either: pynetdicom's network thread polls its socket
every millisecond while it waits. Its other thread, the association reactor,
would poll as often; the pool parks it (:func:`_park`), which halved the
idle Spanner's CPU with three sources kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from pynetdicom.association import Association

#: How long an unused association is kept.
IDLE_SECONDS = 10.0
#: How many unused associations are kept per key (source, calling AE, SOP class).
MAX_IDLE = 2


class AssociationPool:
    """Idle established associations by key; thread-safe.

    ``close`` ends an association the pool no longer keeps (released, expired,
    full, or no longer established); it must not block the caller for long."""

    def __init__(
        self,
        close: Callable[[Association], None],
        idle_seconds: float = IDLE_SECONDS,
        max_idle: int = MAX_IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._end = close
        self._clock = clock
        self._idle: dict[Hashable, list[tuple[float, Association]]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None

    def take(self, key: Hashable) -> Association | None:
        """The most recently returned association for ``key`` that is still
        established and not expired, or None. Others met on the way are ended."""
        now = self._clock()
        found: Association | None = None
        dropped: list[Association] = []
        with self._lock:
            entries = self._idle.get(key, [])
            while entries and found is None:
                since, assoc = entries.pop()
                if assoc.is_established and now - since < self.idle_seconds and _quiet(assoc):
                    found = assoc
                else:
                    dropped.append(assoc)
            if not entries:
                self._idle.pop(key, None)
        for assoc in dropped:
            self._end(assoc)
        return found

    def give_back(self, key: Hashable, assoc: Association) -> None:
        """Keeps ``assoc`` for the next caller, or ends it when it is no longer
        established, the pool is closed or ``key`` already has ``max_idle``."""
        # The pool ends idle associations itself (released after idle_seconds);
        # pynetdicom's idle timer would abort them instead.
        assoc.network_timeout = None
        with self._lock:
            entries = self._idle.setdefault(key, [])
            keep = (
                assoc.is_established and not self._closed.is_set() and len(entries) < self.max_idle
            )
            if keep:
                _park(assoc)
                entries.append((self._clock(), assoc))
                self._start_reaper()
            elif not entries:
                del self._idle[key]
        if not keep:
            self._end(assoc)

    def expire(self) -> int:
        """Ends the associations idle for ``idle_seconds`` or more; how many."""
        now = self._clock()
        expired: list[Association] = []
        with self._lock:
            for key in list(self._idle):
                fresh = []
                for since, assoc in self._idle[key]:
                    if now - since < self.idle_seconds and assoc.is_established:
                        fresh.append((since, assoc))
                    else:
                        expired.append(assoc)
                if fresh:
                    self._idle[key] = fresh
                else:
                    del self._idle[key]
        for assoc in expired:
            self._end(assoc)
        return len(expired)

    def idle(self, key: Hashable | None = None) -> int:
        """How many associations are kept, for ``key`` or in all."""
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, ()))
            return sum(len(entries) for entries in self._idle.values())

    def close(self) -> None:
        """Ends every kept association; associations given back later are ended too."""
        with self._lock:
            self._closed.set()
            kept = [assoc for entries in self._idle.values() for _, assoc in entries]
            self._idle.clear()
        for assoc in kept:
            self._end(assoc)

    def _start_reaper(self) -> None:
        # Called with the lock held. One daemon thread per pool, started on first
        # use: idle associations are released even when no query comes again.
        if self._reaper is None:
            self._reaper = threading.Thread(
                target=self._reap, name="dimse-pool-reaper", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        while not self._closed.wait(self.idle_seconds / 2):
            self.expire()


def _park(assoc: Association) -> None:
    """Stops the association's reactor thread polling while it waits in the pool.

    pynetdicom pauses the reactor this way around each of its own requests
    (``send_c_find`` waits until it is paused, then resumes it), so a parked
    association goes straight to its next C-FIND. The DUL thread still reads what
    the peer sends; :func:`_quiet` looks at it before the association is lent."""
    assoc._reactor_checkpoint.clear()


def _quiet(assoc: Association) -> bool:
    """True when the peer has sent nothing while the association was parked (a
    release request or an abort would otherwise wait for a reactor that is not
    looking)."""
    return assoc.dul.peek_next_pdu() is None and assoc.dimse.msg_queue.empty()
