"""Network partition: connection errors across services that share a node or zone."""

from __future__ import annotations

from corrmesh.correlation.analysis.facts import node_id, ref_of
from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.vocabulary import is_connection_error
from corrmesh.correlation.analysis.patterns.workloads import workload_name

#: Resources behind one shared place that must see connection errors.
MIN_SHARED = 2
#: Without a shared place, this many workloads still make a partition likely.
MIN_WORKLOADS_WITHOUT_PLACE = 3
#: Kinds of place that pods share and that can be cut off.
_PLACE_KINDS = ("node/", "zone/", "host/")


class NetworkPartition(Pattern):
    name = "network_partition"
    specificity = 3

    def match(self, context: PatternContext) -> Found | None:
        errors = [e for e in context.facts.events if is_connection_error(e)]
        workloads = {workload_name(e.resource) for e in errors}
        if len(workloads) < 2:
            return None
        erroring = {node_id(e.resource) for e in errors}
        # The place whose failure reaches most of the erroring resources.
        place, shared = "", 0
        for candidate, reached in context.reach.items():
            if candidate.startswith(_PLACE_KINDS):
                count = len(erroring.intersection(reached))
                if count > shared:
                    place, shared = candidate, count
        if shared >= MIN_SHARED:
            root = ref_of(place)
            confidence = min(0.95, 0.7 + 0.05 * min(shared, 5))
            summary = (
                f"Root cause: network partition at {root.kind} {root.name}: "
                f"{len(workloads)} services report connection errors"
            )
            return Found(self.name, None, root, errors[:10], confidence, summary, "partition")
        if len(workloads) < MIN_WORKLOADS_WITHOUT_PLACE:
            return None
        first = errors[0]
        confidence = min(0.8, 0.55 + 0.05 * len(workloads))
        summary = f"Likely network partition: {len(workloads)} services report connection errors"
        return Found(
            self.name, first, first.resource, errors[:10], confidence, summary, "partition"
        )
