"""Node failure: NodeNotReady, then evictions, then Pods that cannot be scheduled."""

from __future__ import annotations

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.vocabulary import (
    SCHEDULING_TYPES,
    is_eviction,
    is_node_down,
)


class NodeFailure(Pattern):
    name = "node_failure"
    specificity = 4

    def match(self, context: PatternContext) -> Found | None:
        events = context.facts.events
        down = [e for e in events if e.resource.kind.lower() == "node" and is_node_down(e)]
        if not down:
            return None
        root = down[0]
        after = [e for e in events if e.occurred_us >= root.occurred_us]
        evictions = [e for e in after if is_eviction(e)]
        unscheduled = [e for e in after if e.type.lower() in SCHEDULING_TYPES]
        pods_down = [e for e in after if is_node_down(e) and e.resource.kind.lower() != "node"]
        consequences = bool(evictions) + bool(unscheduled) + bool(pods_down)
        if not consequences:
            return None
        confidence = min(0.95, 0.6 + 0.12 * consequences + 0.05 * min(len(evictions), 3))
        chain = [root] + (evictions[:5] + pods_down[:5] + unscheduled[:5])
        chain.sort(key=lambda e: e.occurred_us)
        moved = len({e.resource_key for e in evictions + pods_down})
        summary = f"Root cause: node {root.resource.name} went NotReady"
        if moved:
            summary += f", taking down {moved} pod{'s' if moved != 1 else ''}"
        return Found(self.name, root, root.resource, chain, confidence, summary, root.type)
