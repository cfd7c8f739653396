"""Recurring failure: the same failure on the same workload at a regular interval.

Each occurrence is its own group ("OOM every 6 hours" is three incidents, not
one), so this pattern reads the history the analyst keeps: for each failure
signature (cause type and workload), the times earlier groups showed it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from statistics import mean, pstdev

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.workloads import workload_name
from corrmesh.correlation.analysis.priors import prior
from corrmesh.correlation.window import EventInfo

#: Occurrences, this one included, before a failure counts as recurring.
MIN_OCCURRENCES = 3
#: Largest coefficient of variation of the gaps that still counts as regular.
MAX_GAP_VARIATION = 0.25
#: Events below this cause prior do not start a signature (probes, pulls).
MIN_SIGNATURE_PRIOR = 0.6


def signatures(events: list[EventInfo]) -> dict[str, int]:
    """Failure signature -> first time it shows in ``events`` (cause-like events only)."""
    found: dict[str, int] = {}
    for event in events:
        if event.severity < 2 or prior(event) < MIN_SIGNATURE_PRIOR:
            continue
        key = f"{event.type.lower()}|{workload_name(event.resource)}"
        found.setdefault(key, event.occurred_us)
    return found


def occurrences(history: Iterable[int], at: int) -> list[int]:
    """The times a failure first seen at ``at`` has shown so far: ``history``'s
    earlier ones, then ``at``."""
    return [*sorted(t for t in history if t < at), at]


def regularity(times: Sequence[int]) -> float | None:
    """How irregular the gaps between ``times`` are (their coefficient of
    variation) when the times count as a recurrence; None when they do not."""
    if len(times) < MIN_OCCURRENCES:
        return None
    gaps = [b - a for a, b in itertools.pairwise(times)]
    average = mean(gaps)
    if average <= 0:
        return None
    variation = pstdev(gaps) / average
    return variation if variation <= MAX_GAP_VARIATION else None


def _hours(micros: float) -> str:
    hours = micros / 3_600_000_000
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{micros / 60_000_000:.0f} min"


class RecurringFailure(Pattern):
    name = "recurring_failure"
    specificity = 5

    def match(self, context: PatternContext) -> Found | None:
        best: tuple[float, str, list[int]] | None = None
        for key, at in signatures(context.facts.events).items():
            times = occurrences(context.history.get(key, ()), at)
            variation = regularity(times)
            if variation is not None and (best is None or variation < best[0]):
                best = (variation, key, times)
        if best is None:
            return None
        variation, key, times = best
        cause, workload = key.split("|", 1)
        root = next(
            e
            for e in context.facts.events
            if e.type.lower() == cause and workload_name(e.resource) == workload
        )
        interval = _hours(mean(b - a for a, b in itertools.pairwise(times)))
        confidence = min(0.95, 0.7 + 0.05 * (len(times) - MIN_OCCURRENCES) + (0.25 - variation))
        summary = (
            f"Root cause: {root.type} on {workload} recurs every {interval} "
            f"({len(times)} times so far)"
        )
        return Found(self.name, root, root.resource, [root], confidence, summary, root.type)
