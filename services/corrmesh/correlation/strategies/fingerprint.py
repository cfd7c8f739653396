"""``fingerprint``: the same fingerprint inside the window scores 1."""

from __future__ import annotations

from corrmesh.correlation.strategies import FINGERPRINT, Match, Strategy, StrategyContext, register
from corrmesh.correlation.strategies.signals import seconds_apart
from corrmesh.correlation.window import EventInfo

NAME = "fingerprint"


class FingerprintStrategy(Strategy):
    name = NAME
    indexes = frozenset({FINGERPRINT})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if not new_event.fingerprint or new_event.fingerprint != candidate.fingerprint:
            return None
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        return Match(1.0, NAME, f"same fingerprint {new_event.fingerprint}, {apart}")


register(FingerprintStrategy)
