"""The event-time window: events that may still be correlated, and indexes.

Candidates are found by key (fingerprint, resource, resources of one cluster
for Topology), never by scanning the window. Events leave the window when
the watermark passes them: an event older than ``watermark - window`` can no
longer match anything that will be accepted, because an accepted event is
never older than the watermark. Eviction is driven by event time only, so a
replay gives the same window as a live run.

Index entries keep arrival order (which is Ingest's sequence order), and a
lookup returns the most recent entries of a key first, at most ``limit`` of
them: a key seen a thousand times in the window yields a bounded candidate
list, and those recent events nearly always share one group already.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from corrmesh.correlation.resources import resource_key
from corrmesh.v1 import event_pb2


@dataclass(slots=True)
class EventInfo:
    """What the engine keeps of an event: enough to score, group and store it."""

    event_id: str
    sequence: int
    #: Event time (occurred_at) in microseconds since the epoch.
    occurred_us: int
    correlation_id: str
    domain: int
    source: str
    fingerprint: str
    resource_key: str
    resource: event_pb2.ResourceRef
    title: str
    severity: int
    #: The group it belongs to; None while it is alone.
    group_id: str | None = None

    @classmethod
    def from_event(cls, event: event_pb2.Event) -> EventInfo:
        ts = event.occurred_at
        resource = event_pb2.ResourceRef()
        resource.CopyFrom(event.resource)
        return cls(
            event_id=event.event_id,
            sequence=event.sequence,
            occurred_us=ts.seconds * 1_000_000 + ts.nanos // 1000,
            correlation_id=event.correlation_id,
            domain=event.domain,
            source=event.source,
            fingerprint=event.fingerprint,
            resource_key=resource_key(resource),
            resource=resource,
            title=event.title,
            severity=event.severity,
        )


def _take_recent(entries: dict[str, None] | None, limit: int) -> Iterator[str]:
    if not entries:
        return iter(())
    return islice(reversed(entries), limit)


class EventWindow:
    """Events inside the window, indexed by fingerprint and by resource."""

    def __init__(self) -> None:
        self.events: dict[str, EventInfo] = {}
        self._by_fingerprint: dict[str, dict[str, None]] = {}
        self._by_resource: dict[str, dict[str, None]] = {}
        # cluster -> resource key -> ref, least recently seen first.
        self._resources_by_cluster: dict[str, dict[str, event_pb2.ResourceRef]] = {}
        self._expiry: list[tuple[int, int, str]] = []

    def __len__(self) -> int:
        return len(self.events)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.events

    def add(self, event: EventInfo) -> None:
        """Puts ``event`` in the window and its indexes (O(1))."""
        self.events[event.event_id] = event
        if event.fingerprint:
            self._by_fingerprint.setdefault(event.fingerprint, {})[event.event_id] = None
        if event.resource_key:
            self._by_resource.setdefault(event.resource_key, {})[event.event_id] = None
            recent = self._resources_by_cluster.setdefault(event.resource.cluster, {})
            recent.pop(event.resource_key, None)
            recent[event.resource_key] = event.resource
        heapq.heappush(self._expiry, (event.occurred_us, event.sequence, event.event_id))

    def evict_before(self, horizon_us: int) -> list[EventInfo]:
        """Removes and returns every event older than ``horizon_us``."""
        evicted: list[EventInfo] = []
        while self._expiry and self._expiry[0][0] < horizon_us:
            _, _, event_id = heapq.heappop(self._expiry)
            event = self.events.pop(event_id, None)
            if event is None:
                continue
            self._unindex(event)
            evicted.append(event)
        return evicted

    def _unindex(self, event: EventInfo) -> None:
        if event.fingerprint:
            _discard(self._by_fingerprint, event.fingerprint, event.event_id)
        if event.resource_key and not _discard(
            self._by_resource, event.resource_key, event.event_id
        ):
            recent = self._resources_by_cluster.get(event.resource.cluster)
            if recent is not None:
                recent.pop(event.resource_key, None)
                if not recent:
                    del self._resources_by_cluster[event.resource.cluster]

    def by_fingerprint(self, fingerprint: str, limit: int) -> list[EventInfo]:
        """The newest ``limit`` events with ``fingerprint``, newest first."""
        ids = _take_recent(self._by_fingerprint.get(fingerprint), limit)
        return [self.events[i] for i in ids]

    def by_resource(self, key: str, limit: int) -> list[EventInfo]:
        """The newest ``limit`` events about the resource ``key``, newest first."""
        ids = _take_recent(self._by_resource.get(key), limit)
        return [self.events[i] for i in ids]

    def recent_resources(
        self, cluster: str, exclude: str, limit: int
    ) -> list[tuple[str, event_pb2.ResourceRef]]:
        """Up to ``limit`` resource keys of ``cluster`` in the window, most recently seen first."""
        recent = self._resources_by_cluster.get(cluster)
        if not recent:
            return []
        found: list[tuple[str, event_pb2.ResourceRef]] = []
        for key in reversed(recent):
            if key == exclude:
                continue
            found.append((key, recent[key]))
            if len(found) >= limit:
                break
        return found


def _discard(index: dict[str, dict[str, None]], key: str, event_id: str) -> bool:
    """Removes ``event_id`` under ``key``; True when the key still has entries."""
    entries = index.get(key)
    if entries is None:
        return False
    entries.pop(event_id, None)
    if entries:
        return True
    del index[key]
    return False
