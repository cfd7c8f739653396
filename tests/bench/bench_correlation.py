"""In-process correlation engine benchmarks (``make bench`` runs them).

Reproduces the throughput table of incident-correlation-engine.md (analyse
with 1, 10 and 100 candidates; get group) and adds the figures issue 3 asks
for: 10,000 events active in the window, and the multi-camera buffer scan at
100,000 buffered detections. Every rate is shown beside a baseline measured
in the same run: a bare loop that only turns each Event into the engine's
EventInfo and stores it in a dict, the least per-event work an engine in
Python can do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from corrmesh.correlation.config import default_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.groups import group_message
from corrmesh.correlation.window import EventInfo
from corrmesh.runtime.gc_tuning import tune_garbage_collection
from corrmesh.v1 import event_pb2

START = 1_790_000_000
#: What incident-correlation-engine.md reports for its Rust engine (8 vCPU).
DOCUMENTED = {1: 50_000, 10: 10_000, 100: 1_000}


@dataclass
class Result:
    label: str
    events: int
    seconds: float
    target: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _event(
    at: float,
    *,
    fingerprint: str = "",
    resource: str = "",
    source: str = "",
    title: str = "",
    camera: tuple[str, str, str] | None = None,
) -> event_pb2.Event:
    unique = uuid.uuid4().hex
    built = event_pb2.Event(
        event_id=unique,
        correlation_id=unique,
        domain=event_pb2.DOMAIN_CAMERA if camera else event_pb2.DOMAIN_KUBERNETES,
        source=source or f"bench-{unique[:8]}",
        title=title or f"signal-{unique}",
        severity=event_pb2.SEVERITY_WARNING,
        fingerprint=fingerprint,
    )
    built.occurred_at.FromNanoseconds(int((START + at) * 1e9))
    if resource:
        built.resource.CopyFrom(
            event_pb2.ResourceRef(cluster="bench", kind="Pod", namespace="load", name=resource)
        )
    if camera:
        built.camera.camera_id, built.camera.controller_id, built.camera.detection_type = camera
    return built


class Runner:
    """Feeds events in sequence order like the consumer, committing every 500."""

    def __init__(self, engine: CorrelationEngine) -> None:
        self.engine = engine
        self.sequence = 0

    def feed(self, events: Sequence[event_pb2.Event]) -> float:
        engine = self.engine
        started = time.perf_counter()
        for index, built in enumerate(events):
            self.sequence += 1
            built.sequence = self.sequence
            engine.apply(engine.prepare(built), _no_relation)
            if index % 500 == 499:
                engine.take_changes()
                engine.committed()
        engine.take_changes()
        engine.committed()
        return time.perf_counter() - started


def _no_relation(_a: str, _b: str) -> None:
    return None


def baseline(events: Sequence[event_pb2.Event]) -> float:
    kept: dict[str, EventInfo] = {}
    started = time.perf_counter()
    for built in events:
        info = EventInfo.from_event(built)
        kept[info.event_id] = info
    return time.perf_counter() - started


def analyse_with_candidates(k: int, count: int) -> tuple[Result, float]:
    """Each measured event meets about ``k`` candidates in the window.

    Up to 50 share its fingerprint; beyond that (the 100 case) 20 share its
    source and 8 each of its four title words (the per-key limits), 102 in all.
    """
    runner = Runner(CorrelationEngine(default_config()))
    prefill: list[event_pb2.Event] = []
    measured: list[event_pb2.Event] = []
    wide = k > 50
    # All inside one window: the prefill in the first seconds, then the measured events.
    for i in range(count):
        at = i * 0.001
        prefill += [_event(at, fingerprint=f"fp-{i}") for _ in range(min(k, 50))]
        words = [f"w{j}x{i}" for j in range(4)]
        if wide:
            for _ in range(20):
                prefill.append(_event(at, source=f"src-{i}"))
            for word in words:
                prefill += [_event(at, title=f"{word} other{j}") for j in range(8)]
        measured.append(
            _event(
                60 + at,
                fingerprint=f"fp-{i}",
                source=f"src-{i}" if wide else "",
                title=" ".join(words) if wide else "",
            )
        )
    runner.feed(prefill)
    seen = len(runner.engine.prepare(measured[0]).candidates)
    assert seen >= k, f"expected {k} candidates, found {seen}"
    seconds = runner.feed(measured)
    label = f"analyse, {seen} candidate{'s' if seen > 1 else ''}"
    return Result(label, count, seconds, DOCUMENTED[k]), baseline(measured)


def get_group(count: int) -> tuple[Result, float]:
    runner = Runner(CorrelationEngine(default_config()))
    runner.feed([_event(i * 0.01, fingerprint=f"fp-{i // 5}") for i in range(5000)])
    groups = list(runner.engine.groups.values())
    started = time.perf_counter()
    for i in range(count):
        group_message(runner.engine.groups[groups[i % len(groups)].group_id])
    seconds = time.perf_counter() - started
    return Result("get group (5 members, as a Group message)", count, seconds, 1_000_000), 0.0


def active_events(first: int, count: int, active: int) -> list[event_pb2.Event]:
    """Events ``first`` .. ``first + count`` of a stream that keeps ``active`` events
    inside the 300 s window: incidents of 4 events (one fingerprint, one Pod each),
    every source and title their own. The mesh bench sends the same stream."""
    rate = active / 300.0
    return [
        _event(
            (first + i) / rate,
            fingerprint=f"fp-{(first + i) // 4}",
            resource=f"pod-{((first + i) // 4) % 5000}",
        )
        for i in range(count)
    ]


def active_window(active: int, count: int) -> tuple[Result, float]:
    """Incidents of 4 events each, with 10,000 events inside the 300 s window."""
    engine = CorrelationEngine(default_config())
    runner = Runner(engine)
    runner.feed(active_events(0, active + 2000, active))
    in_window = len(engine.window)
    measured = active_events(active + 2000, count, active)
    seconds = runner.feed(measured)
    note = f"{in_window:,} events in the window"
    return Result("analyse, 10k events active", count, seconds, 20_000, note), baseline(measured)


def camera_scan(buffered: int, count: int) -> list[tuple[Result, float]]:
    """The candidate scan alone (what AC5 times), then the whole analyse."""
    config = default_config()
    engine = CorrelationEngine(config)
    runner = Runner(engine)
    spread = 60.0 / buffered
    kinds = ("person", "vehicle", "animal", "package")
    fill = [
        _event(i * spread, camera=(f"cam-{i % 64}", f"nvr-{i % 8}", kinds[i % 4]))
        for i in range(buffered)
    ]
    runner.feed(fill)
    measured = [
        _event(60 + i * spread, camera=(f"cam-{i % 64}", f"nvr-{i % 8}", kinds[i % 4]))
        for i in range(count)
    ]
    started = time.perf_counter()
    for built in measured:
        engine.prepare(built)
    scan = time.perf_counter() - started
    note = f"{len(engine.window):,} buffered; target < 0.1 ms/event"
    scanned = Result("multi-camera candidate scan, 100k buffered", count, scan, 10_000, note)
    seconds = runner.feed(measured)
    analysed = Result("multi-camera analyse, 100k buffered", count, seconds, None, note)
    return [(scanned, baseline(measured)), (analysed, baseline(measured))]


def run(console: Console, quick: bool = False) -> list[Result]:
    tune_garbage_collection()  # as the Correlation server does
    scale = 0.2 if quick else 1.0
    cases: list[Callable[[], tuple[Result, float] | list[tuple[Result, float]]]] = [
        lambda: analyse_with_candidates(1, int(20_000 * scale)),
        lambda: analyse_with_candidates(10, int(10_000 * scale)),
        lambda: analyse_with_candidates(100, int(2_000 * scale)),
        lambda: get_group(int(50_000 * scale)),
        lambda: active_window(10_000, int(20_000 * scale)),
        lambda: camera_scan(int(100_000 * scale), int(10_000 * scale)),
    ]
    table = Table(title="correlation engine, in-process (one core)")
    for column in (
        "case",
        "events/s",
        "µs/event",
        "target/s",
        "ratio to target",
        "ratio to baseline",
        "note",
    ):
        table.add_column(column, justify="right")
    results = []
    measured: list[tuple[Result, float]] = []
    for case in cases:
        found = case()
        measured += found if isinstance(found, list) else [found]
    for result, base_seconds in measured:
        results.append(result)
        to_base = f"{(base_seconds / result.seconds):.3f}" if base_seconds else "-"
        table.add_row(
            result.label,
            f"{result.rate:,.0f}",
            f"{1e6 / result.rate:.1f}",
            f"{result.target:,.0f}" if result.target else "-",
            f"{result.rate / result.target:.2f}" if result.target else "-",
            to_base,
            result.note,
        )
    console.print(table)
    return results


if __name__ == "__main__":
    run(Console())
