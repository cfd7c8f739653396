"""``pattern``: events that read alike.

Score: title similarity 60%, description similarity 30%, +10% for the same
severity, +10% for the same type (capped at 1); similarity is token Jaccard,
joined by normalised Levenshtein similarity when both strings are short
(rapidfuzz). Below ``pattern_similarity_threshold`` it is no signal.
"""

from __future__ import annotations

from corrmesh.correlation.strategies import TOKENS, Match, Strategy, StrategyContext, register
from corrmesh.correlation.strategies.signals import pattern_score, percent, seconds_apart
from corrmesh.correlation.window import EventInfo

NAME = "pattern"


class PatternStrategy(Strategy):
    name = NAME
    indexes = frozenset({TOKENS})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if abs(new_event.occurred_us - candidate.occurred_us) > context.window_us:
            return None
        score, title = pattern_score(new_event, candidate)
        if score < context.pattern_threshold:
            return None
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        return Match(score, NAME, f"titles {percent(title)} similar, {apart}")


register(PatternStrategy)
