"""Pluggable correlation strategies and their registry.

A strategy looks at a new event and one candidate already in the window and
says whether they belong together, how strongly (a score in [0, 1]) and why,
in words a person can read. It also names the window indexes its candidates
come from (:data:`INDEXES`): the engine looks up only the indexes of the
strategies enabled for the event's domain, and asks each strategy only about
candidates its own indexes found, so nothing ever scans the window.

The engine weighs each answer with the configuration
(:class:`corrmesh.v1.correlation_pb2.StrategyConfig`: enabled, weight,
threshold, per domain) and keeps the best. To add a strategy, subclass
:class:`Strategy`, call :func:`register` in its module and import the module
from :func:`_load_builtins` (or before the engine starts, for one of your
own); its name then becomes valid in ``UpdateConfig``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from corrmesh.correlation.camera_travel import TravelTimes
from corrmesh.correlation.window import EventInfo

#: (RelationKind, distance) as Topology's RelateResources answers it.
Relation = tuple[int, int]

# The window's indexes a strategy may draw candidates from.
FINGERPRINT = "fingerprint"
RESOURCE = "resource"
SOURCE = "source"
TOKENS = "tokens"
TOPOLOGY = "topology"
CAMERA = "camera"
CORRELATION = "correlation"
INDEXES = frozenset({FINGERPRINT, RESOURCE, SOURCE, TOKENS, TOPOLOGY, CAMERA, CORRELATION})


@dataclass(frozen=True, slots=True)
class Match:
    """A strategy's verdict that two events belong together."""

    score: float
    strategy: str
    reason: str


def _no_relation(_a: str, _b: str) -> Relation | None:
    return None


def alone(event: EventInfo) -> tuple[EventInfo, Collection[str]]:
    """The pass of an event in no group: itself, on its own camera."""
    return event, (event.camera_id,)


@dataclass(slots=True)
class StrategyContext:
    """What a strategy may consult besides the two events."""

    #: The temporal window in microseconds of event time.
    window_us: int
    #: Topology's answer for two resource keys, or None when there is none
    #: (not asked, or Topology unavailable: "no topology signal").
    relation: Callable[[str, str], Relation | None] = _no_relation
    #: Below this, pattern similarity is no signal (config.pattern_similarity_threshold).
    pattern_threshold: float = 0.7
    #: The multi-camera window in microseconds.
    camera_window_us: int = 10_000_000
    camera_same_controller: bool = True
    #: Detection type -> its class; similar types share a class.
    camera_class: Mapping[str, str] = field(default_factory=dict)
    #: Travel times between cameras learnt so far (see camera_travel); None
    #: when the window alone decides (multi_camera.fixed_window).
    camera_travel: TravelTimes | None = field(default_factory=TravelTimes)
    #: The pass an event belongs to: its newest sighting and the cameras it
    #: has shown on (the event itself while it is alone).
    camera_track: Callable[[EventInfo], tuple[EventInfo, Collection[str]]] = alone


class Strategy(ABC):
    """One way of deciding that two events are correlated."""

    #: The name used in configuration, edges and statistics.
    name: ClassVar[str]
    #: The window indexes this strategy's candidates come from (see INDEXES).
    indexes: ClassVar[frozenset[str]]
    #: True when the strategy consults Topology: the engine then collects
    #: resource pairs for it before scoring.
    uses_topology: ClassVar[bool] = False

    def applies_to(self, event: EventInfo) -> bool:
        """False when the strategy can say nothing about ``event`` at all."""
        return True

    @abstractmethod
    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        """The match between ``new_event`` and ``candidate``, or None.

        Both events are inside the engine's window of each other; the
        strategy must be cheap (a few microseconds) because it runs for every
        candidate its indexes found.
        """


_REGISTRY: dict[str, Callable[[], Strategy]] = {}


def register(factory: Callable[[], Strategy], name: str | None = None) -> None:
    """Makes a strategy available under ``name`` (default: its class's ``name``)."""
    key = name or factory().name
    _REGISTRY[key] = factory


def strategy_names() -> list[str]:
    """Names of every registered strategy, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def create_strategies() -> list[Strategy]:
    """One instance of every registered strategy, in name order."""
    _load_builtins()
    return [_REGISTRY[name]() for name in sorted(_REGISTRY)]


def _load_builtins() -> None:
    # Imported lazily: the built-in modules import this one for Strategy.
    from corrmesh.correlation.strategies import (  # noqa: F401
        combined,
        correlation_id,
        fingerprint,
        multi_camera,
        pattern,
        source,
        temporal,
        topology,
    )
