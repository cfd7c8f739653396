"""The event-time window: events that may still be correlated, and their indexes.

Candidates are found by key, never by scanning the window: by fingerprint, by
resource, by source, by title token, by the recently active resources of a
cluster (for Topology) and by camera controller and detection class (for the
multi-camera strategy). Events leave the window when the watermark passes
them: an event older than ``watermark - window`` can no longer match anything
that will be accepted, because an accepted event is never older than the
watermark. Eviction is driven by event time only, so a replay gives the same
window as a live run.

Index entries keep arrival order (Ingest's sequence order), and a lookup
returns the most recent entries of a key first, at most ``limit`` of them: a
key seen a thousand times in the window yields a bounded candidate list, and
those recent events nearly always share one group already.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

from corrmesh.correlation.resources import resource_key
from corrmesh.v1 import correlation_pb2, event_pb2

#: Attribute that marks an event as resolving what it matches (besides an
#: incident whose status is RESOLVED).
RESOLVES_ATTRIBUTE = "resolves"
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.:/-]*")
#: Title tokens used to find candidates: the longest ones carry the meaning.
INDEXED_TOKENS = 8
_MIN_TOKEN_LENGTH = 3


def title_tokens(text: str) -> frozenset[str]:
    """Lower-cased word tokens of ``text`` (what Jaccard similarity compares)."""
    return frozenset(_TOKEN.findall(text.lower()))


def _resolves(event: event_pb2.Event) -> bool:
    if event.WhichOneof("details") == "incident":
        return event.incident.status == event_pb2.ALERT_STATUS_RESOLVED
    return event.attributes.get(RESOLVES_ATTRIBUTE, "").lower() == "true"


def _repeats(event: event_pb2.Event) -> bool:
    """True when the source says this is its problem again, not a new one: a
    Kubernetes Event the cluster counted again, an alert still firing since
    before this notice."""
    details = event.WhichOneof("details")
    if details == "kubernetes":
        return event.kubernetes.count >= 2
    if details == "incident" and event.incident.HasField("starts_at"):
        started = event.incident.starts_at
        occurred = event.occurred_at
        return (started.seconds, started.nanos) < (occurred.seconds, occurred.nanos)
    return False


def _fires(event: event_pb2.Event) -> bool:
    """True for an alert that stays firing until its source says it resolved."""
    return (
        event.WhichOneof("details") == "incident"
        and event.incident.status != event_pb2.ALERT_STATUS_RESOLVED
    )


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
    description: str = ""
    type: str = ""
    camera_id: str = ""
    controller_id: str = ""
    detection_type: str = ""
    #: True for an event that says something is over (a resolved alert).
    resolves: bool = False
    #: True for a repeat of a series its source counts (see :func:`_repeats`):
    #: it may still join a quiet group holding that series.
    repeats: bool = False
    #: True for an alert that fires until resolved: its group is never quiet meanwhile.
    fires: bool = False
    #: The group whose open condition it carries on (see conditions), or "".
    continues: str = ""
    #: The group it belongs to; None while it is alone.
    group_id: str | None = None
    #: Key in the camera index (controller and detection class); "" for other events.
    camera_key: str = ""
    tokens: frozenset[str] = field(default_factory=frozenset)
    #: Its GroupMember message without correlated ids, built on first use.
    template: correlation_pb2.GroupMember | None = None

    def __post_init__(self) -> None:
        if not self.tokens and self.title:
            self.tokens = title_tokens(self.title)

    @classmethod
    def from_event(cls, event: event_pb2.Event) -> EventInfo:
        ts = event.occurred_at
        resource = event_pb2.ResourceRef()
        resource.CopyFrom(event.resource)
        camera = event.camera if event.WhichOneof("details") == "camera" else None
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
            description=event.description,
            type=event.type,
            camera_id=camera.camera_id if camera else "",
            controller_id=camera.controller_id if camera else "",
            detection_type=camera.detection_type.lower() if camera else "",
            resolves=_resolves(event),
            repeats=_repeats(event),
            fires=_fires(event),
        )


def _take_recent(entries: dict[str, None] | None, limit: int) -> Iterator[str]:
    if not entries:
        return iter(())
    return islice(reversed(entries), limit)


class _KeyIndex:
    """key -> event ids in arrival order; the newest come back first."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, None]] = {}

    def add(self, key: str, event_id: str) -> None:
        self.entries.setdefault(key, {})[event_id] = None

    def recent(self, key: str, limit: int) -> Iterator[str]:
        return _take_recent(self.entries.get(key), limit)

    def discard(self, key: str, event_id: str) -> bool:
        """Removes ``event_id`` under ``key``; True when the key still has entries."""
        entries = self.entries.get(key)
        if entries is None:
            return False
        entries.pop(event_id, None)
        if entries:
            return True
        del self.entries[key]
        return False


def indexed_tokens(info: EventInfo) -> list[str]:
    """The tokens of ``info``'s title that go into the token index."""
    useful = [t for t in info.tokens if len(t) >= _MIN_TOKEN_LENGTH and not t.isdigit()]
    useful.sort(key=lambda t: (-len(t), t))
    return useful[:INDEXED_TOKENS]


class EventWindow:
    """Events inside the window and the indexes that find candidates among them."""

    def __init__(self) -> None:
        self.events: dict[str, EventInfo] = {}
        self.fingerprints = _KeyIndex()
        self.resources = _KeyIndex()
        self.sources = _KeyIndex()
        self.tokens = _KeyIndex()
        self.cameras = _KeyIndex()
        self.correlations = _KeyIndex()
        # cluster -> resource key -> ref, least recently seen first.
        self._resources_by_cluster: dict[str, dict[str, event_pb2.ResourceRef]] = {}
        self._expiry: list[tuple[int, int, str]] = []

    def __len__(self) -> int:
        return len(self.events)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.events

    def add(self, event: EventInfo) -> None:
        """Puts ``event`` in the window and its indexes (O(tokens))."""
        event_id = event.event_id
        self.events[event_id] = event
        if event.fingerprint:
            self.fingerprints.add(event.fingerprint, event_id)
        if event.source:
            self.sources.add(event.source, event_id)
        for token in indexed_tokens(event):
            self.tokens.add(token, event_id)
        if event.camera_key:
            self.cameras.add(event.camera_key, event_id)
        if event.correlation_id:
            self.correlations.add(event.correlation_id, event_id)
        if event.resource_key:
            self.resources.add(event.resource_key, event_id)
            recent = self._resources_by_cluster.setdefault(event.resource.cluster, {})
            recent.pop(event.resource_key, None)
            recent[event.resource_key] = event.resource
        heapq.heappush(self._expiry, (event.occurred_us, event.sequence, event_id))

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
        event_id = event.event_id
        if event.fingerprint:
            self.fingerprints.discard(event.fingerprint, event_id)
        if event.source:
            self.sources.discard(event.source, event_id)
        for token in indexed_tokens(event):
            self.tokens.discard(token, event_id)
        if event.camera_key:
            self.cameras.discard(event.camera_key, event_id)
        if event.correlation_id:
            self.correlations.discard(event.correlation_id, event_id)
        if event.resource_key and not self.resources.discard(event.resource_key, event_id):
            recent = self._resources_by_cluster.get(event.resource.cluster)
            if recent is not None:
                recent.pop(event.resource_key, None)
                if not recent:
                    del self._resources_by_cluster[event.resource.cluster]

    def lookup(self, index: _KeyIndex, key: str, limit: int) -> list[EventInfo]:
        """The newest ``limit`` events under ``key`` of ``index``, newest first."""
        events = self.events
        return [events[i] for i in index.recent(key, limit)]

    def by_fingerprint(self, fingerprint: str, limit: int) -> list[EventInfo]:
        return self.lookup(self.fingerprints, fingerprint, limit)

    def by_resource(self, key: str, limit: int) -> list[EventInfo]:
        return self.lookup(self.resources, key, limit)

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
