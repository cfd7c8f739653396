"""``correlation_id``: events the edge already tied together with one correlation id.

Every event of one DICOM association carries the association's id, a firing
and a resolved Alertmanager notification share theirs, and a client may set
one on purpose for the events of one operation: they belong together (1.0).
An id an edge made up for a single event matches nothing else.
"""

from __future__ import annotations

from corrmesh.correlation.strategies import CORRELATION, Match, Strategy, StrategyContext, register
from corrmesh.correlation.strategies.signals import seconds_apart
from corrmesh.correlation.window import EventInfo

NAME = "correlation_id"


class CorrelationIdStrategy(Strategy):
    name = NAME
    indexes = frozenset({CORRELATION})

    def applies_to(self, event: EventInfo) -> bool:
        return bool(event.correlation_id)

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if new_event.correlation_id != candidate.correlation_id:
            return None
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        return Match(1.0, NAME, f"same correlation id {new_event.correlation_id}, {apart}")


register(CorrelationIdStrategy)
