"""Cascading failure: one resource fails, then what depends on it, along the topology."""

from __future__ import annotations

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.exhaustion import exhaustion_words
from corrmesh.correlation.analysis.patterns.vocabulary import is_exhaustion
from corrmesh.correlation.analysis.patterns.workloads import workload_name

#: Dependents that must fail after the root for a cascade.
MIN_DEPENDENTS = 2


class CascadingFailure(Pattern):
    name = "cascading_failure"
    specificity = 3

    def match(self, context: PatternContext) -> Found | None:
        facts = context.facts
        failing = facts.failing
        if len(failing) < MIN_DEPENDENTS + 1:
            return None
        best = None
        for root in failing[:5]:
            reached = context.reach.get(root.node, {})
            dependents = [
                f
                for f in failing
                if f.node != root.node
                and f.node in reached
                and f.first_failure_us >= root.first_failure_us
            ]
            root_workload = workload_name(root.ref)
            workloads = {workload_name(f.ref) for f in dependents} - {root_workload}
            if len(dependents) < MIN_DEPENDENTS or not workloads:
                continue
            share = len(dependents) / (len(failing) - 1)
            if best is None or share > best[0]:
                best = (share, root, dependents, workloads)
        if best is None:
            return None
        share, root, dependents, workloads = best
        root_events = [e for e in root.events if e.severity >= 2] or root.events
        exhausted = [e for e in root_events if is_exhaustion(e)]
        root_event = exhausted[0] if exhausted else root_events[0]
        confidence = min(0.95, 0.5 + 0.3 * share + (0.15 if exhausted else 0.0))
        if exhausted:
            what = exhaustion_words(
                f"{root_event.type} {root_event.title} {root_event.description}"
            )
        else:
            what = f"failure ({root_event.type})" if root_event.type else "failure"
        dependents.sort(key=lambda f: f.first_failure_us)
        chain = [root_event, *[f.events[0] for f in dependents][:20]]
        count = len(workloads)
        summary = (
            f"Root cause: {workload_name(root.ref)} {what} affecting "
            f"{count} service{'s' if count != 1 else ''}"
        )
        return Found(self.name, root_event, root.ref, chain, confidence, summary, root_event.type)
