"""The pattern library: each failure shape a :class:`Pattern` in its own module.

A new pattern implements :meth:`Pattern.match` and is passed to
:func:`register`. :func:`best_match` tries them all and keeps the most
confident match at or above :data:`MIN_CONFIDENCE`; between equally confident
matches the more specific pattern wins (a node failure over a storm).
"""

from __future__ import annotations

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.cascading import CascadingFailure
from corrmesh.correlation.analysis.patterns.deployment import BadDeployment
from corrmesh.correlation.analysis.patterns.exhaustion import ResourceExhaustion
from corrmesh.correlation.analysis.patterns.network import NetworkPartition
from corrmesh.correlation.analysis.patterns.node import NodeFailure
from corrmesh.correlation.analysis.patterns.recurring import RecurringFailure
from corrmesh.correlation.analysis.patterns.storm import AlertStorm

MIN_CONFIDENCE = 0.6

PATTERNS: list[Pattern] = [
    NodeFailure(),
    BadDeployment(),
    RecurringFailure(),
    CascadingFailure(),
    NetworkPartition(),
    ResourceExhaustion(),
    AlertStorm(),
]


def register(pattern: Pattern) -> None:
    """Adds ``pattern`` to the library (replacing one of the same name)."""
    PATTERNS[:] = [p for p in PATTERNS if p.name != pattern.name] + [pattern]


def best_match(context: PatternContext, min_confidence: float = MIN_CONFIDENCE) -> Found | None:
    """The most confident pattern match in the group, or None."""
    found = [m for p in PATTERNS if (m := p.match(context)) is not None]
    found = [m for m in found if m.confidence >= min_confidence]
    if not found:
        return None
    rank = {p.name: p.specificity for p in PATTERNS}
    return max(found, key=lambda m: (round(m.confidence, 2), rank.get(m.pattern, 0)))


__all__ = ["PATTERNS", "Found", "Pattern", "PatternContext", "best_match", "register"]
