"""Source health (consecutive failures, latency, back-off) and the query-result cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from corrmesh.v1 import spanner_pb2 as pb


@dataclass
class _Health:
    consecutive_failures: int = 0
    average_latency: float = 0.0
    backoff_until: float = 0.0
    last_error: str = ""


@dataclass
class HealthTracker:
    """After ``failure_threshold`` consecutive failures a source is skipped for a
    back-off that doubles with each further failure, from ``base_backoff`` up to
    ``max_backoff`` seconds. One success makes it healthy again."""

    failure_threshold: int = 3
    base_backoff: float = 5.0
    max_backoff: float = 300.0
    clock: Callable[[], float] = time.time
    _sources: dict[str, _Health] = field(default_factory=dict)

    def skip_until(self, node_id: str) -> float:
        """The end of the source's back-off, or 0 when it may be asked now."""
        health = self._sources.get(node_id)
        if health is None or health.backoff_until <= self.clock():
            return 0.0
        return health.backoff_until

    def succeeded(self, node_id: str, latency: float) -> None:
        health = self._sources.setdefault(node_id, _Health())
        health.consecutive_failures = 0
        health.backoff_until = 0.0
        health.last_error = ""
        # Exponential moving average: recent latency matters most.
        health.average_latency = (
            latency if health.average_latency == 0 else 0.7 * health.average_latency + 0.3 * latency
        )

    def failed(self, node_id: str, error: str) -> None:
        health = self._sources.setdefault(node_id, _Health())
        health.consecutive_failures += 1
        health.last_error = error
        extra = health.consecutive_failures - self.failure_threshold
        if extra >= 0:
            delay = min(self.max_backoff, self.base_backoff * (2 ** min(extra, 20)))
            health.backoff_until = self.clock() + delay

    def reset(self, node_id: str) -> None:
        self._sources.pop(node_id, None)

    def snapshot(self) -> list[pb.SourceHealth]:
        """Every source seen so far, for GetServiceStatus."""
        out = []
        for node_id, health in sorted(self._sources.items()):
            item = pb.SourceHealth(
                node_id=node_id,
                healthy=health.consecutive_failures < self.failure_threshold,
                consecutive_failures=health.consecutive_failures,
                last_error=health.last_error,
            )
            item.average_latency.CopyFrom(seconds_to_duration(health.average_latency))
            if health.backoff_until > self.clock():
                item.backoff_until.CopyFrom(_timestamp(health.backoff_until))
            out.append(item)
        return out


def seconds_to_duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


@dataclass
class TtlCache:
    """Query results by key, each kept for its configuration's TTL."""

    clock: Callable[[], float] = time.monotonic
    max_entries: int = 1000
    _entries: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock():
            del self._entries[key]
            return None
        return value

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            # Drop the entry closest to expiry; simple and bounded.
            del self._entries[min(self._entries, key=lambda k: self._entries[k][0])]
        self._entries[key] = (self.clock() + ttl, value)

    def clear(self) -> None:
        self._entries.clear()
