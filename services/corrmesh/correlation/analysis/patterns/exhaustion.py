"""Resource exhaustion: OOMKilled, evictions, CPU throttling, disk or memory pressure."""

from __future__ import annotations

from corrmesh.correlation.analysis.patterns.base import (
    Found,
    Pattern,
    PatternContext,
    first_per_resource,
)
from corrmesh.correlation.analysis.patterns.vocabulary import is_exhaustion
from corrmesh.correlation.analysis.patterns.workloads import workload_name

KIND_WORDS = (
    ("oom", "memory exhaustion"),
    ("memory", "memory exhaustion"),
    ("mem_", "memory exhaustion"),
    ("cpu", "CPU exhaustion"),
    ("disk", "disk exhaustion"),
    ("fs_", "disk exhaustion"),
    ("storage", "disk exhaustion"),
    ("evict", "resource exhaustion"),
)


def exhaustion_words(text: str) -> str:
    """ "memory exhaustion", "CPU exhaustion", ... for an exhaustion event's text."""
    lowered = text.lower()
    for needle, words in KIND_WORDS:
        if needle in lowered:
            return words
    return "resource exhaustion"


class ResourceExhaustion(Pattern):
    name = "resource_exhaustion"
    specificity = 2

    def match(self, context: PatternContext) -> Found | None:
        facts = context.facts
        exhausted = [e for e in facts.events if is_exhaustion(e)]
        if not exhausted:
            return None
        # The workload that ran out first; node-level OOM reports name the
        # process, so prefer a Pod's own OOMKilled when there is one.
        own = [e for e in exhausted if e.resource.kind.lower() != "node"] or exhausted
        root = own[0]
        affected = {e.resource_key for e in facts.events if e.severity >= 2}
        repeats = sum(
            1 for e in exhausted if workload_name(e.resource) == workload_name(root.resource)
        )
        confidence = min(0.95, 0.6 + 0.1 * min(repeats - 1, 2) + 0.05 * min(len(affected) - 1, 3))
        words = exhaustion_words(f"{root.type} {root.title} {root.description}")
        others = len(affected) - 1
        summary = f"Root cause: {workload_name(root.resource)} {words} ({root.type})"
        if others > 0:
            summary += f" affecting {others} other resource{'s' if others != 1 else ''}"
        return Found(
            self.name,
            root,
            root.resource,
            first_per_resource(exhausted)[:10],
            confidence,
            summary,
            root.type,
        )
