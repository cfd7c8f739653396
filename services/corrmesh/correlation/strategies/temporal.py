"""``temporal``: closeness in event time alone, ``e^(-3·Δt/window)``.

Time alone says little: any two events of a busy estate are close in time.
So its candidates are the ones the other indexes found (same fingerprint,
resource, source, title words, topology neighbours), never the whole window,
and the default configuration leaves it off on its own; ``combined`` uses its
signal. Turn it on (with a weight) for an estate where "at the same time"
really means "together".
"""

from __future__ import annotations

from corrmesh.correlation.strategies import (
    FINGERPRINT,
    RESOURCE,
    SOURCE,
    TOKENS,
    TOPOLOGY,
    Match,
    Strategy,
    StrategyContext,
    register,
)
from corrmesh.correlation.strategies.signals import seconds_apart, temporal_score
from corrmesh.correlation.window import EventInfo

NAME = "temporal"


class TemporalStrategy(Strategy):
    name = NAME
    indexes = frozenset({FINGERPRINT, RESOURCE, SOURCE, TOKENS, TOPOLOGY})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        score = temporal_score(new_event.occurred_us, candidate.occurred_us, context.window_us)
        if score <= 0.0:
            return None
        return Match(score, NAME, seconds_apart(new_event.occurred_us, candidate.occurred_us))


register(TemporalStrategy)
