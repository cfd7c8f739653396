"""The pattern interface: one small class per failure shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from corrmesh.correlation.analysis.facts import GroupFacts
from corrmesh.correlation.analysis.root_cause import Candidate, Reach
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2


@dataclass(frozen=True)
class PatternContext:
    """What a pattern may look at: the group, the topology around it, the ranking."""

    facts: GroupFacts
    #: Where each resource's failure travels (root_cause.Reach).
    reach: Reach
    #: The ranked root-cause candidates of the group.
    candidates: Sequence[Candidate]
    #: Failure signature -> event times (µs) at which earlier groups showed it.
    history: Mapping[str, Sequence[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """A pattern's answer for one group."""

    pattern: str
    root_event: EventInfo | None
    root_ref: event_pb2.ResourceRef
    chain: list[EventInfo]
    confidence: float
    summary: str
    #: What the cause was, for the action rules: "OOMKilled", "NodeNotReady".
    cause: str


class Pattern(ABC):
    """One failure shape. ``match`` returns None when the group does not have it."""

    #: snake_case name reported in PatternMatch.pattern.
    name: ClassVar[str]
    #: Which pattern wins between two equally confident matches (higher first).
    specificity: ClassVar[int] = 1

    @abstractmethod
    def match(self, context: PatternContext) -> Found | None:
        """The match of this pattern in the group, or None."""


def first_per_resource(events: Sequence[EventInfo]) -> list[EventInfo]:
    """The first of ``events`` on each resource, in time order."""
    seen: set[str] = set()
    chain = []
    for event in events:
        if event.resource_key not in seen:
            seen.add(event.resource_key)
            chain.append(event)
    return chain
