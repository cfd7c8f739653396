"""The story of a group in words: what happened first, and why each event joined."""

from __future__ import annotations

from corrmesh.correlation.resources import describe
from corrmesh.v1 import correlation_pb2

_STATUS_WORDS = {
    correlation_pb2.GROUP_STATUS_BUILDING: "building (not enough evidence yet)",
    correlation_pb2.GROUP_STATUS_ACTIVE: "active",
    correlation_pb2.GROUP_STATUS_STABLE: "stable (quiet)",
    correlation_pb2.GROUP_STATUS_RESOLVED: "resolved",
    correlation_pb2.GROUP_STATUS_ARCHIVED: "archived",
}


def _where(member: correlation_pb2.GroupMember) -> str:
    ref = member.resource
    return f" on {describe(ref)}" if ref.kind or ref.name or ref.uid else ""


def _span(group: correlation_pb2.Group) -> str:
    seconds = group.last_event_at.ToSeconds() - group.first_event_at.ToSeconds()
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600, 1):g} h"


def _cause_sentence(group: correlation_pb2.Group) -> str:
    """What broke and what else is affected, from the group's analysis."""
    parts = []
    if group.HasField("pattern"):
        parts.append(group.pattern.summary.rstrip(".") + ".")
        if group.pattern.recommended_action:
            parts.append(f"Next: {group.pattern.recommended_action.rstrip('.')}.")
    elif group.root_cause_candidates:
        best = group.root_cause_candidates[0]
        parts.append(f"Most likely root cause: {describe(best.resource)} ({best.reason}).")
    if group.impact_summary:
        parts.append(group.impact_summary.rstrip(".") + ".")
    return " ".join(parts)


def explain(group: correlation_pb2.Group) -> correlation_pb2.ExplainGroupResponse:
    """Steps in event-time order; each says why its event joined (the edges into it)."""
    joined_by: dict[str, list[correlation_pb2.CorrelationEdge]] = {}
    for edge in group.edges:
        joined_by.setdefault(edge.to_event_id, []).append(edge)
    steps = []
    for member in group.members:
        text = f"{member.title}{_where(member)}"
        edges = joined_by.get(member.event_id, [])
        if member.event_id == group.primary_event_id:
            text += ": the first event of the group"
        elif edges:
            best = max(edges, key=lambda e: e.score)
            text += f": joined by {best.strategy} ({best.score:.2f}), {best.reason}"
            if len(edges) > 1:
                text += f"; and {len(edges) - 1} more link{'s' if len(edges) > 2 else ''}"
        else:
            text += ": came with a merged group"
        steps.append(
            correlation_pb2.ExplanationStep(
                occurred_at=member.occurred_at, event_id=member.event_id, text=text
            )
        )
    resources = {describe(m.resource) for m in group.members if m.resource.name}
    summary = (
        f"{group.title}: {group.member_count} events over {_span(group)}"
        f" on {len(resources)} resource{'s' if len(resources) != 1 else ''}, "
        f"{_STATUS_WORDS.get(group.status, 'unknown')}."
    )
    cause = _cause_sentence(group)
    if cause:
        summary += f" {cause}"
    return correlation_pb2.ExplainGroupResponse(
        group_id=group.group_id,
        summary=summary,
        steps=steps,
        root_cause_candidates=group.root_cause_candidates,
        pattern=group.pattern if group.HasField("pattern") else None,
        impact=group.impact,
    )
