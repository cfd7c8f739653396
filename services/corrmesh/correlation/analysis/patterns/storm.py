"""Burst / alert storm: far more events than an incident usually has, in a short time."""

from __future__ import annotations

from collections import Counter

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.vocabulary import ROLLOUT_TYPES
from corrmesh.correlation.window import EventInfo

#: Events in one minute that make a storm.
STORM_PER_MINUTE = 20
MINUTE_US = 60_000_000


def peak_per_minute(events: list[EventInfo]) -> int:
    """The most events inside any one-minute span (events in time order)."""
    best = start = 0
    for end, event in enumerate(events):
        while event.occurred_us - events[start].occurred_us > MINUTE_US:
            start += 1
        best = max(best, end - start + 1)
    return best


class AlertStorm(Pattern):
    name = "alert_storm"
    specificity = 0

    def match(self, context: PatternContext) -> Found | None:
        events = context.facts.events
        peak = peak_per_minute(events)
        if peak < STORM_PER_MINUTE:
            return None
        kind, count = Counter(e.type for e in events).most_common(1)[0]
        # A scale-out far beyond capacity starts a storm of its own making.
        rollout = next((e for e in events if e.type.lower() in ROLLOUT_TYPES), None)
        root: EventInfo | None
        if rollout is not None:
            root, root_ref = rollout, rollout.resource
        elif context.candidates:
            top = context.candidates[0]
            root = next((e for e in events if e.event_id == top.event_id), None)
            root_ref = top.ref
        else:
            root, root_ref = events[0], events[0].resource
        confidence = min(
            0.9, 0.6 + 0.1 * (peak // STORM_PER_MINUTE - 1) + 0.1 * (count > len(events) / 2)
        )
        summary = (
            f"Alert storm: {len(events)} events, up to {peak} a minute, mostly {kind}"
            f"; started at {root_ref.name or root_ref.kind}"
        )
        return Found(self.name, root, root_ref, events[:10], confidence, summary, kind)
