"""``combined``: temporal, pattern, source and fingerprint signals together.

Score = 0.3·temporal + 0.3·pattern + 0.2·source + 0.2·fingerprint, times 1.2
when two or more of them agree, capped at 1 (incident-correlation-engine.md).
A signal counts when it is above zero; pattern counts only from
``pattern_similarity_threshold`` up, like the pattern strategy. It reads the
signals itself, whether or not those strategies are enabled on their own.
Temporal closeness is always one signal inside the window, so the boost
needs one more: the same source, a similar text or the same fingerprint.
"""

from __future__ import annotations

from corrmesh.correlation.strategies import (
    FINGERPRINT,
    SOURCE,
    TOKENS,
    Match,
    Strategy,
    StrategyContext,
    register,
)
from corrmesh.correlation.strategies.signals import (
    pattern_score,
    percent,
    seconds_apart,
    temporal_score,
)
from corrmesh.correlation.window import EventInfo

NAME = "combined"
TEMPORAL_WEIGHT = 0.3
PATTERN_WEIGHT = 0.3
SOURCE_WEIGHT = 0.2
FINGERPRINT_WEIGHT = 0.2
MULTI_SIGNAL_BOOST = 1.2


class CombinedStrategy(Strategy):
    name = NAME
    indexes = frozenset({FINGERPRINT, SOURCE, TOKENS})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        temporal = temporal_score(new_event.occurred_us, candidate.occurred_us, context.window_us)
        if temporal <= 0.0:
            return None
        total = temporal * TEMPORAL_WEIGHT
        signals = 1
        words = [seconds_apart(new_event.occurred_us, candidate.occurred_us)]
        if new_event.fingerprint and new_event.fingerprint == candidate.fingerprint:
            total += FINGERPRINT_WEIGHT
            signals += 1
            words.insert(0, f"same fingerprint {new_event.fingerprint}")
        if new_event.source and new_event.source == candidate.source:
            total += SOURCE_WEIGHT
            signals += 1
            words.insert(0, f"same source {new_event.source}")
        pattern, title = pattern_score(new_event, candidate)
        if pattern >= context.pattern_threshold:
            total += pattern * PATTERN_WEIGHT
            signals += 1
            words.append(f"titles {percent(title)} similar")
        if signals < 2:
            return None
        return Match(min(1.0, total * MULTI_SIGNAL_BOOST), NAME, ", ".join(words))


register(CombinedStrategy)
