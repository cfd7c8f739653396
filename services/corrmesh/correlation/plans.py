"""What the engine hands out and takes back: plans, changes, restored state."""

from __future__ import annotations

from dataclasses import dataclass, field

from corrmesh.correlation.camera_travel import CameraStep
from corrmesh.correlation.dicom.keys import DicomStep
from corrmesh.correlation.dicom.state import DicomChanges, DicomRestored
from corrmesh.correlation.groups import Edge, GroupState
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2, event_pb2

#: Two resource keys, smaller first: relations are symmetric.
ResourcePair = tuple[str, str]
PairRefs = dict[ResourcePair, tuple[event_pb2.ResourceRef, event_pb2.ResourceRef]]


def pair_key(a: str, b: str) -> ResourcePair:
    return (a, b) if a <= b else (b, a)


@dataclass(slots=True)
class Candidate:
    """An event of the window found for a new event, and by which indexes (bit mask)."""

    event: EventInfo
    found_by: int


@dataclass(slots=True)
class Plan:
    """One event, prepared: its candidates and the resources Topology may relate it to."""

    event: EventInfo
    candidates: list[Candidate]
    #: Recently active resources of the event's cluster: (key, ref).
    neighbours: list[tuple[str, event_pb2.ResourceRef]] = field(default_factory=list)
    late: bool = False
    duplicate: bool = False
    #: The DICOM processing step it records, if it is one.
    dicom: DicomStep | None = None

    @property
    def pairs(self) -> PairRefs:
        """The (event's resource, neighbour) pairs to ask Topology about."""
        own, ref = self.event.resource_key, self.event.resource
        return {pair_key(own, key): (ref, other) for key, other in self.neighbours}


@dataclass(slots=True)
class Restored:
    """Engine state read back from the store."""

    newest_us: int | None = None
    next_sequence: int = 1
    events_in: int = 0
    groups_created: int = 0
    late_events: int = 0
    #: Groups with a member inside the window: fully loaded.
    groups: list[GroupState] = field(default_factory=list)
    #: Groups whose status can still change but with no member in the window: headers.
    headers: list[GroupState] = field(default_factory=list)
    loners: list[EventInfo] = field(default_factory=list)
    dicom: DicomRestored = field(default_factory=DicomRestored)
    #: Steps of camera passes, oldest first: the travel times to learn again.
    camera_steps: list[CameraStep] = field(default_factory=list)


@dataclass(slots=True)
class Changes:
    """What changed since the last commit: exactly what the store must write."""

    new_groups: list[GroupState]
    changed_groups: list[GroupState]
    new_members: list[EventInfo]
    #: (group id, edge) for edges made since the last commit.
    new_edges: list[tuple[str, Edge]]
    #: Stored groups folded into another: old id -> id of the group they are now in.
    absorbed: dict[str, str]
    #: Groups whose members and edges are written again whole (after a manual edit).
    rewritten: list[GroupState]
    #: (group id, other group id, RelationshipType) links made since the last commit.
    new_links: list[tuple[str, str, int]]
    lone_added: list[EventInfo]
    lone_removed: list[str]
    #: Stored lone events older than this left the window.
    horizon_us: int | None
    updates: list[correlation_pb2.GroupUpdate]
    newest_us: int | None
    watermark_us: int | None
    events_in: int
    groups_created: int
    late_events: int
    #: Derived (batch, patient) memberships, correlation-id links, alert state.
    dicom: DicomChanges = field(default_factory=DicomChanges)
