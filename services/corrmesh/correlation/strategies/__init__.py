"""Pluggable correlation strategies and their registry.

A strategy looks at a new event and one candidate already in the window and
says whether they belong together, how strongly (a score in [0, 1]) and why,
in words a person can read. The engine picks candidates from its indexes,
asks every enabled strategy about each, weighs the answers with the
configuration (:class:`corrmesh.v1.correlation_pb2.StrategyConfig`) and keeps
the best. A new strategy subclasses :class:`Strategy` and calls
:func:`register`; its name becomes valid in ``UpdateConfig``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from corrmesh.correlation.window import EventInfo

#: (RelationKind, distance) as Topology's RelateResources answers it.
Relation = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Match:
    """A strategy's verdict that two events belong together."""

    score: float
    strategy: str
    reason: str


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may consult besides the two events."""

    #: The temporal window in microseconds of event time.
    window_us: int
    #: Topology's answer for two resource keys, or None when there is none
    #: (not asked, or Topology unavailable: "no topology signal").
    relation: Callable[[str, str], Relation | None]


class Strategy(ABC):
    """One way of deciding that two events are correlated."""

    #: The name used in configuration, edges and statistics.
    name: ClassVar[str]
    #: True when the strategy consults Topology: the engine then collects
    #: resource pairs for it before scoring.
    uses_topology: ClassVar[bool] = False

    @abstractmethod
    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        """The match between ``new_event`` and ``candidate``, or None.

        Both events are inside the window of each other; the strategy must be
        cheap (tens of microseconds) because it runs for every candidate.
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
    from corrmesh.correlation.strategies import direct_link  # noqa: F401
