"""When DICOM processing deserves an alert: stuck correlations and error rates.

Both run on event time, like the rest of the engine, so a replay raises the
same alerts at the same points.

**Stuck.** For each association and each batch, :class:`StuckWatch` counts
instances *started* (RECEIVED, succeeded) and *finished* (the ``complete_at``
stage reached, or a failure at or before it; a failure at RECEIVED never
started). While started exceeds finished the correlation has work in flight;
when it then sees no step for ``stuck_after`` of event time (the watermark
passes its newest step by that much) it is stuck: one alert, and the watch
ends. A new step later starts a fresh watch, so the next stall alerts again.
A correlation with nothing in flight is not watched at all; one with more
finished than started (steps published out of order) is watched until it
balances or goes quiet for ``stuck_after``, without alerting. Memory and
writes are therefore bounded by the correlations with work in flight.

**Error rate.** For each (calling AE, stage), :class:`ErrorRates` counts the
steps of that stage and the failures among them over the last
``error_window`` of event time, in 60 buckets (so the window is exact to a
sixtieth). When failures reach ``error_min_count`` and ``error_threshold`` of
the steps, the key is *over*: each group holding one of the window's failures
gets one alert, and a group whose first failure comes while the key stays
over gets one too. When the key falls back under, it re-arms. So a storm of
failures is one alert per group per crossing, never one per event.
"""

from __future__ import annotations

import bisect
import heapq
import json
from dataclasses import dataclass, field

from corrmesh.v1 import event_pb2

BUCKETS = 60
MIN_BUCKET_US = 1_000_000
#: Groups remembered per key as holding recent failures (the newest are kept).
MAX_FAILING_GROUPS = 32
#: Groups remembered as alerted while a key stays over its threshold.
MAX_ALERTED_GROUPS = 1024
RECEIVED: int = event_pb2.PROCESSING_STAGE_RECEIVED
STORED: int = event_pb2.PROCESSING_STAGE_STORED
FORWARDED: int = event_pb2.PROCESSING_STAGE_FORWARDED
SUCCEEDED: int = event_pb2.PROCESSING_OUTCOME_SUCCEEDED
FAILED: int = event_pb2.PROCESSING_OUTCOME_FAILED
#: The pipeline's order, for "a failure at or before complete_at".
_ORDER: dict[int, int] = {RECEIVED: 1, STORED: 2, FORWARDED: 3}
_PAST_TENSE: dict[int, str] = {STORED: "stored", FORWARDED: "forwarded"}


def stage_name(stage: int) -> str:
    """RECEIVED, STORED, ... (the name without its prefix)."""
    return event_pb2.ProcessingStage.Name(stage).removeprefix("PROCESSING_STAGE_")  # type: ignore[arg-type]


def describe_duration(micros: int) -> str:
    """A short human form: 45s, 10m, 1h30m."""
    seconds = round(micros / 1_000_000)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


# -- stuck correlations ------------------------------------------------------------------


@dataclass(slots=True)
class Watched:
    """A correlation (association or batch) with work in flight."""

    #: What the alert calls it: "association from CT1", "exam accession A12".
    label: str
    #: The group an alert goes to ("" while it has none).
    group_id: str
    started: int = 0
    finished: int = 0
    #: Event time of its newest step, microseconds.
    last_us: int = 0
    #: True while its deadline is in the heap.
    queued: bool = False

    @property
    def in_flight(self) -> int:
        return self.started - self.finished


@dataclass(frozen=True, slots=True)
class StuckAlert:
    key: str
    group_id: str
    text: str


class StuckWatch:
    """Correlations with work in flight, and the deadline each is stuck at."""

    def __init__(self) -> None:
        self.entries: dict[str, Watched] = {}
        self._due: list[tuple[int, str]] = []
        self.stuck_us = 0
        self.complete_at = STORED
        #: Keys changed or gone since the state was last written.
        self.dirty: set[str] = set()
        self.removed: set[str] = set()

    def configure(self, stuck_us: int, complete_at: int) -> None:
        """New settings; deadlines are recomputed (0 turns the watch off and forgets all)."""
        self.stuck_us = stuck_us
        self.complete_at = complete_at if complete_at in _PAST_TENSE else STORED
        if not stuck_us:
            self.removed.update(self.entries)
            self.dirty.clear()
            self.entries.clear()
        self._due = []
        for key, entry in self.entries.items():
            entry.queued = True
            self._due.append((entry.last_us + stuck_us, key))
        heapq.heapify(self._due)

    def _effect(self, stage: int, outcome: int) -> tuple[int, int]:
        """(started, finished) increments of one step."""
        if outcome == FAILED:
            if stage == RECEIVED:
                return 0, 0
            return (0, 1) if _ORDER.get(stage, 99) <= _ORDER[self.complete_at] else (0, 0)
        if outcome != SUCCEEDED:
            return 0, 0
        if stage == RECEIVED:
            return 1, 0
        return (0, 1) if stage == self.complete_at else (0, 0)

    def record(
        self, key: str, label: str, group_id: str, stage: int, outcome: int, at_us: int
    ) -> None:
        """One step of correlation ``key`` (with the group an alert would go to)."""
        if not self.stuck_us:
            return
        started, finished = self._effect(stage, outcome)
        entry = self.entries.get(key)
        if entry is None:
            if not started and not finished:
                return
            entry = Watched(label, group_id)
            self.entries[key] = entry
        entry.started += started
        entry.finished += finished
        entry.last_us = max(entry.last_us, at_us)
        if group_id:
            entry.group_id = group_id
        if entry.in_flight == 0:
            self._drop(key)
            return
        self.dirty.add(key)
        self.removed.discard(key)
        if not entry.queued:
            entry.queued = True
            heapq.heappush(self._due, (entry.last_us + self.stuck_us, key))

    def _drop(self, key: str) -> None:
        self.entries.pop(key, None)
        self.dirty.discard(key)
        self.removed.add(key)

    def due(self, watermark_us: int) -> list[StuckAlert]:
        """Alerts for the correlations the watermark has found stuck; they stop being watched."""
        alerts: list[StuckAlert] = []
        while self._due and self._due[0][0] <= watermark_us:
            _, key = heapq.heappop(self._due)
            entry = self.entries.get(key)
            if entry is None:
                continue
            deadline = entry.last_us + self.stuck_us
            if deadline > watermark_us:  # progress since it was queued
                heapq.heappush(self._due, (deadline, key))
                continue
            self._drop(key)
            if entry.in_flight > 0 and entry.group_id:
                alerts.append(StuckAlert(key, entry.group_id, self._text(entry)))
        return alerts

    def _text(self, entry: Watched) -> str:
        done = _PAST_TENSE[self.complete_at]
        return (
            f"Stuck: {entry.label}: {entry.in_flight} instance(s) received but not {done}; "
            f"no step for {describe_duration(self.stuck_us)}"
        )

    # -- persistence --------------------------------------------------------------------

    def dump(self, key: str) -> str:
        entry = self.entries[key]
        return json.dumps(
            [entry.label, entry.group_id, entry.started, entry.finished, entry.last_us]
        )

    def load(self, key: str, payload: str) -> None:
        """Restores one entry written by :meth:`dump` (call :meth:`configure` after)."""
        label, group_id, started, finished, last_us = json.loads(payload)
        self.entries[key] = Watched(label, group_id, started, finished, last_us)


# -- error rates -------------------------------------------------------------------------


@dataclass(slots=True)
class RateWindow:
    """Steps and failures of one (calling AE, stage) over the window."""

    #: [bucket start µs, steps, failures], oldest first.
    buckets: list[list[int]] = field(default_factory=list)
    over: bool = False
    #: Group id -> event time of its newest failure in the window.
    failing: dict[str, int] = field(default_factory=dict)
    #: Groups alerted since the key went over.
    alerted: list[str] = field(default_factory=list)

    def totals(self) -> tuple[int, int]:
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)


@dataclass(frozen=True, slots=True)
class RateAlert:
    group_ids: list[str]
    text: str


class ErrorRates:
    """Failure rates per (calling AE, stage) and their crossings."""

    def __init__(self) -> None:
        self.windows: dict[str, RateWindow] = {}
        self.threshold = 0.0
        self.min_count = 1
        self.window_us = 0
        self.bucket_us = MIN_BUCKET_US
        self.dirty: set[str] = set()
        self.removed: set[str] = set()

    def configure(self, threshold: float, min_count: int, window_us: int) -> None:
        """New settings (threshold 0 turns rates off and forgets all)."""
        changed = (threshold, window_us) != (self.threshold, self.window_us)
        self.threshold = threshold
        self.min_count = max(1, min_count)
        self.window_us = window_us
        self.bucket_us = max(MIN_BUCKET_US, window_us // BUCKETS)
        if changed or threshold <= 0 or window_us <= 0:
            # Buckets of another width cannot be compared: start afresh.
            self.removed.update(self.windows)
            self.dirty.clear()
            self.windows.clear()

    @staticmethod
    def key_of(calling_ae: str, stage: int) -> str:
        return f"{calling_ae}\x1f{stage}"

    def record(
        self,
        calling_ae: str,
        stage: int,
        failed: bool,
        at_us: int,
        now_us: int,
        group_ids: list[str],
    ) -> RateAlert | None:
        """One step of ``stage`` from ``calling_ae`` at ``at_us``; ``now_us`` is the newest
        event time. Returns the alert for the groups to tell, if this step makes the key
        cross its threshold (or adds a failing group while it is over)."""
        if self.threshold <= 0 or self.window_us <= 0:
            return None
        horizon = now_us - self.window_us
        if at_us <= horizon:
            return None
        key = self.key_of(calling_ae, stage)
        window = self.windows.setdefault(key, RateWindow())
        self._add(window, at_us, failed)
        if failed:
            for group_id in group_ids:
                window.failing.pop(group_id, None)
                window.failing[group_id] = at_us
        self._expire(window, horizon)
        self.dirty.add(key)
        steps, failures = window.totals()
        if not (failures >= self.min_count and failures >= self.threshold * steps):
            if window.over:
                window.over = False
                window.alerted.clear()
            return None
        window.over = True
        told = set(window.alerted)
        targets = [g for g in window.failing if g not in told]
        if not targets:
            return None
        window.alerted.extend(targets)
        del window.alerted[:-MAX_ALERTED_GROUPS]
        return RateAlert(targets, self._text(calling_ae, stage, steps, failures))

    def _add(self, window: RateWindow, at_us: int, failed: bool) -> None:
        start = at_us - at_us % self.bucket_us
        buckets = window.buckets
        if buckets and buckets[-1][0] == start:
            bucket = buckets[-1]
        else:
            index = bisect.bisect_left(buckets, start, key=lambda b: b[0])
            if index < len(buckets) and buckets[index][0] == start:
                bucket = buckets[index]
            else:
                bucket = [start, 0, 0]
                buckets.insert(index, bucket)
        bucket[1] += 1
        bucket[2] += int(failed)

    def _expire(self, window: RateWindow, horizon: int) -> None:
        buckets = window.buckets
        keep = 0
        # A bucket counts while any of it is inside the window.
        while keep < len(buckets) and buckets[keep][0] + self.bucket_us <= horizon:
            keep += 1
        del buckets[:keep]
        failing = window.failing
        for group_id in [g for g, at in failing.items() if at <= horizon]:
            del failing[group_id]
        while len(failing) > MAX_FAILING_GROUPS:
            del failing[next(iter(failing))]

    def _text(self, calling_ae: str, stage: int, steps: int, failures: int) -> str:
        share = failures / steps if steps else 1.0
        return (
            f"{stage_name(stage)} failures from {calling_ae or 'an unnamed AE'}: "
            f"{failures} of {steps} step(s) ({share:.0%}) in the last "
            f"{describe_duration(self.window_us)}, at or over {self.threshold:.0%}"
        )

    # -- persistence --------------------------------------------------------------------

    def dump(self, key: str) -> str:
        window = self.windows[key]
        return json.dumps(
            [
                self.bucket_us,
                window.buckets,
                window.over,
                list(window.failing.items()),
                window.alerted,
            ]
        )

    def load(self, key: str, payload: str) -> None:
        """Restores one key written by :meth:`dump` (after :meth:`configure`); a key
        counted in buckets of another width (the window changed since) starts afresh."""
        bucket_us, buckets, over, failing, alerted = json.loads(payload)
        if bucket_us != self.bucket_us or self.threshold <= 0:
            self.removed.add(key)
            return
        self.windows[key] = RateWindow(buckets, over, dict(failing), alerted)
