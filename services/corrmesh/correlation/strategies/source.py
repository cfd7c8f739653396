"""``source``: the same source inside the window (score 1).

On its own this joins everything one monitoring system says within the
window, so the default configuration leaves it off alone; ``combined`` uses it.
"""

from __future__ import annotations

from corrmesh.correlation.strategies import SOURCE, Match, Strategy, StrategyContext, register
from corrmesh.correlation.strategies.signals import seconds_apart
from corrmesh.correlation.window import EventInfo

NAME = "source"


class SourceStrategy(Strategy):
    name = NAME
    indexes = frozenset({SOURCE})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if not new_event.source or new_event.source != candidate.source:
            return None
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        return Match(1.0, NAME, f"same source {new_event.source}, {apart}")


register(SourceStrategy)
