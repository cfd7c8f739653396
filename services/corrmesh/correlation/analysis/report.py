"""An analysis in the contract's terms: the Group fields it fills."""

from __future__ import annotations

from collections.abc import Sequence

from corrmesh.correlation.analysis.actions import ActionRule, recommend
from corrmesh.correlation.analysis.patterns import Found
from corrmesh.correlation.analysis.root_cause import Candidate
from corrmesh.v1 import correlation_pb2, event_pb2, topology_pb2

#: Impacted resources listed on a group; the summary names fewer.
MAX_IMPACTED = 25
SUMMARY_NAMES = 5

PATTERN_LABELS = {
    "cascading_failure": "Cascading failure",
    "resource_exhaustion": "Resource exhaustion",
    "bad_deployment": "Bad deployment",
    "node_failure": "Node failure",
    "network_partition": "Network partition",
    "recurring_failure": "Recurring failure",
    "alert_storm": "Alert storm",
}


def candidate_messages(
    candidates: Sequence[Candidate],
) -> list[correlation_pb2.RootCauseCandidate]:
    return [
        correlation_pb2.RootCauseCandidate(
            event_id=c.event_id, resource=c.ref, score=round(c.score, 4), reason=c.reason
        )
        for c in candidates
    ]


def pattern_message(found: Found, rules: Sequence[ActionRule]) -> correlation_pb2.PatternMatch:
    root_name = found.root_ref.name or found.root_ref.kind
    return correlation_pb2.PatternMatch(
        pattern=found.pattern,
        root_cause_event_id=found.root_event.event_id if found.root_event else "",
        root_cause_resource=found.root_ref,
        chain_event_ids=[e.event_id for e in found.chain],
        confidence=round(found.confidence, 3),
        summary=found.summary,
        recommended_action=recommend(rules, found.pattern, found.cause, root_name),
    )


def impact_summary(
    label: str, root: event_pb2.ResourceRef, impacted: Sequence[topology_pb2.ImpactedResource]
) -> str:
    """ "Node failure will impact: payment-service, order-service"."""
    if not impacted:
        return ""
    services = [i.resource.name for i in impacted if i.resource.kind.lower() == "service"]
    names = list(dict.fromkeys(services or [i.resource.name for i in impacted]))
    shown = ", ".join(names[:SUMMARY_NAMES])
    more = len(names) - SUMMARY_NAMES
    if more > 0:
        shown += f" and {more} more"
    subject = label or f"A failure of {root.name or root.kind}"
    return f"{subject} will impact: {shown}"


def analysis_message(
    revision: int,
    candidates: Sequence[Candidate],
    found: Found | None,
    rules: Sequence[ActionRule],
    impact: topology_pb2.GetImpactResponse | None,
) -> correlation_pb2.Group:
    """A Group holding only the analysis fields, ready to merge into a full Group."""
    message = correlation_pb2.Group(analyzed_revision=revision)
    message.root_cause_candidates.extend(candidate_messages(candidates))
    if found is not None:
        message.pattern.CopyFrom(pattern_message(found, rules))
    if impact is not None and impact.impacted:
        message.impact.extend(impact.impacted[:MAX_IMPACTED])
        label = PATTERN_LABELS.get(found.pattern, "") if found is not None else ""
        message.impact_summary = impact_summary(label, impact.root, impact.impacted)
    return message
