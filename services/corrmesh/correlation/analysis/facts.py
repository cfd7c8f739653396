"""A group's members seen per resource: the input every analysis step reads.

Resources are named by node id, ``kind/namespace/name`` with the kind in lower
case, so that an event's resource, Topology's answers and the evaluation
format all compare equal whatever case a source used for the kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2

#: Events at or above this severity count as failures; below it (INFO) they
#: are context: a rollout, a pod being scheduled, an image pulled.
FAILING_SEVERITY = event_pb2.SEVERITY_WARNING


def node_id(ref: event_pb2.ResourceRef) -> str:
    """``kind/namespace/name`` of ``ref`` (kind lower-cased); "" when it names nothing."""
    if not ref.name:
        return ""
    return f"{ref.kind.lower()}/{ref.namespace}/{ref.name}"


def ref_of(node: str) -> event_pb2.ResourceRef:
    """The ref a node id names (the inverse of :func:`node_id`, kind in lower case)."""
    kind, namespace, name = node.split("/", 2)
    return event_pb2.ResourceRef(kind=kind, namespace=namespace, name=name)


@dataclass(slots=True)
class ResourceFacts:
    """Everything a group says about one resource."""

    node: str
    ref: event_pb2.ResourceRef
    first_us: int
    last_us: int
    count: int = 0
    failing_count: int = 0
    severity: int = 0
    #: Event types (reasons) in the order they first appeared.
    types: dict[str, None] = field(default_factory=dict)
    events: list[EventInfo] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.failing_count > 0

    @property
    def counted(self) -> int:
        """Its failing events, or all of them when none failed."""
        return self.failing_count or self.count

    @property
    def first_failure_us(self) -> int:
        for event in self.events:
            if event.severity >= FAILING_SEVERITY and not event.resolves:
                return event.occurred_us
        return self.first_us


@dataclass(slots=True)
class GroupFacts:
    """Members in event-time order, and per resource in order of first appearance."""

    events: list[EventInfo]
    resources: dict[str, ResourceFacts]

    @classmethod
    def of(cls, members: Iterable[EventInfo]) -> GroupFacts:
        events = sorted(members, key=lambda e: (e.occurred_us, e.sequence))
        resources: dict[str, ResourceFacts] = {}
        for event in events:
            node = node_id(event.resource)
            if not node:
                continue
            facts = resources.get(node)
            if facts is None:
                facts = resources[node] = ResourceFacts(
                    node, event.resource, event.occurred_us, event.occurred_us
                )
            facts.last_us = event.occurred_us
            facts.count += 1
            if event.severity >= FAILING_SEVERITY and not event.resolves:
                facts.failing_count += 1
            facts.severity = max(facts.severity, event.severity)
            if event.type:
                facts.types.setdefault(event.type, None)
            facts.events.append(event)
        return cls(events, resources)

    @property
    def failing(self) -> list[ResourceFacts]:
        """Resources with at least one failure, in order of their first failure."""
        found = [f for f in self.resources.values() if f.failing]
        found.sort(key=lambda f: f.first_failure_us)
        return found
