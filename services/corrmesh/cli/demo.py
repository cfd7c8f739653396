"""A small outage, published into a running mesh to show correlation at work.

mysql runs out of memory; the api that depends on it fails its readiness
probes; the frontend's error-rate alert fires; a camera on the car park sees a
person, which has nothing to do with it. The scenario declares the service
dependencies in Topology, publishes the events into Ingest, then prints the
groups Correlation formed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.tree import Tree

from corrmesh.v1 import (
    correlation_pb2,
    correlation_pb2_grpc,
    event_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    topology_pb2,
    topology_pb2_grpc,
)

NAMESPACE = "shop"


def _deployment(name: str) -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(cluster="demo", kind="Deployment", namespace=NAMESPACE, name=name)


def _dependency(dependent: str, dependency: str) -> topology_pb2.Dependency:
    # "from" is a Python keyword, so the field is set through the descriptor's name.
    declared = topology_pb2.Dependency()
    getattr(declared, "from").CopyFrom(_deployment(dependent))
    declared.to.CopyFrom(_deployment(dependency))
    return declared


def _at(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


@dataclass(frozen=True)
class ScenarioEvent:
    offset_seconds: float
    domain: event_pb2.Domain.ValueType
    source: str
    resource: str
    severity: event_pb2.Severity.ValueType
    title: str
    type: str
    fingerprint: str


S = event_pb2
SCENARIO = (
    ScenarioEvent(
        0,
        S.DOMAIN_KUBERNETES,
        "kubernetes/demo",
        "mysql",
        S.SEVERITY_ERROR,
        "OOMKilled: container mysql exceeded its memory limit",
        "OOMKilled",
        "k8s/shop/mysql/OOMKilled",
    ),
    ScenarioEvent(
        4,
        S.DOMAIN_KUBERNETES,
        "kubernetes/demo",
        "mysql",
        S.SEVERITY_WARNING,
        "Back-off restarting failed container mysql",
        "BackOff",
        "k8s/shop/mysql/BackOff",
    ),
    ScenarioEvent(
        9,
        S.DOMAIN_KUBERNETES,
        "kubernetes/demo",
        "api",
        S.SEVERITY_WARNING,
        "Readiness probe failed: dial tcp mysql:3306: connection refused",
        "Unhealthy",
        "k8s/shop/api/Unhealthy",
    ),
    ScenarioEvent(
        21,
        S.DOMAIN_KUBERNETES,
        "kubernetes/demo",
        "api",
        S.SEVERITY_WARNING,
        "Readiness probe failed: dial tcp mysql:3306: connection refused",
        "Unhealthy",
        "k8s/shop/api/Unhealthy",
    ),
    ScenarioEvent(
        30,
        S.DOMAIN_INCIDENT,
        "alertmanager",
        "frontend",
        S.SEVERITY_CRITICAL,
        "FrontendErrorRate: HTTP 503 above 5% for 5m",
        "FrontendErrorRate",
        "am/shop/FrontendErrorRate",
    ),
    ScenarioEvent(
        90,
        S.DOMAIN_INCIDENT,
        "alertmanager",
        "frontend",
        S.SEVERITY_CRITICAL,
        "FrontendErrorRate: HTTP 503 above 5% for 5m",
        "FrontendErrorRate",
        "am/shop/FrontendErrorRate",
    ),
    ScenarioEvent(
        45,
        S.DOMAIN_CAMERA,
        "protect/garage",
        "",
        S.SEVERITY_INFO,
        "Person detected at car park entrance",
        "person",
        "",
    ),
)

DEPENDENCIES = (("frontend", "api"), ("api", "mysql"))


def scenario_events(start: float) -> list[event_pb2.Event]:
    """The scenario's events, with event times counted from ``start`` (epoch seconds)."""
    events = []
    for item in SCENARIO:
        event = event_pb2.Event(
            domain=item.domain,
            source=item.source,
            severity=item.severity,
            title=item.title,
            type=item.type,
            fingerprint=item.fingerprint,
            occurred_at=_at(start + item.offset_seconds),
        )
        if item.resource:
            event.resource.CopyFrom(_deployment(item.resource))
        if item.domain == S.DOMAIN_CAMERA:
            event.camera.CopyFrom(
                event_pb2.CameraDetection(
                    camera_id="garage-1",
                    controller_id="nvr-1",
                    detection_type="person",
                    confidence=0.91,
                )
            )
        events.append(event)
    return events


async def run_scenario(
    ingest: str, correlation: str, topology: str, console: Console, timeout: float = 30.0
) -> list[correlation_pb2.Group]:
    """Publishes the scenario and returns the groups once Correlation has consumed it."""
    async with (
        grpc.aio.insecure_channel(ingest) as ingest_channel,
        grpc.aio.insecure_channel(correlation) as correlation_channel,
        grpc.aio.insecure_channel(topology) as topology_channel,
    ):
        await topology_pb2_grpc.TopologyServiceStub(topology_channel).UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(
                dependencies=[_dependency(a, b) for a, b in DEPENDENCIES]
            )
        )
        reply = await ingest_pb2_grpc.IngestServiceStub(ingest_channel).Publish(
            ingest_pb2.PublishRequest(events=scenario_events(time.time() - 120))
        )
        head = max(r.sequence for r in reply.results)
        console.print(
            f"published {reply.accepted_count} events (log sequence up to {head}); "
            "waiting for Correlation"
        )
        correlation_stub = correlation_pb2_grpc.CorrelationServiceStub(correlation_channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stats = await correlation_stub.GetStats(
                correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
            )
            # Consumed, and every group's root cause and impact worked out.
            if stats.consumer_sequence >= head and stats.groups_awaiting_analysis == 0:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("Correlation did not consume the scenario in time")
            await asyncio.sleep(0.2)
        listing = await correlation_stub.ListGroups(correlation_pb2.ListGroupsRequest())
        published = {r.event_id for r in reply.results}
        return [g for g in listing.groups if any(m.event_id in published for m in g.members)]


def _add_analysis(tree: Tree, group: correlation_pb2.Group) -> None:
    """What broke, why, and what else is affected."""
    if not group.root_cause_candidates:
        return
    cause = tree.add("root cause")
    if group.HasField("pattern"):
        cause.add(f"[bold]{group.pattern.summary}[/bold] ({group.pattern.pattern})")
        if group.pattern.recommended_action:
            cause.add(f"next: {group.pattern.recommended_action}")
    for rank, candidate in enumerate(group.root_cause_candidates[:3], start=1):
        ref = candidate.resource
        cause.add(f"{rank}. {ref.kind} {ref.name} ({candidate.score:.2f}): {candidate.reason}")
    if group.impact_summary:
        cause.add(group.impact_summary)


def print_groups(groups: list[correlation_pb2.Group], console: Console) -> None:
    """Each group as a tree: its events in event-time order, then why they were joined."""
    for group in groups:
        status = correlation_pb2.GroupStatus.Name(group.status).removeprefix("GROUP_STATUS_")
        tree = Tree(f"[bold]{group.title}[/bold]  [dim]{status}, group {group.group_id[:8]}[/dim]")
        members = sorted(group.members, key=lambda m: m.occurred_at.ToNanoseconds())
        first = members[0].occurred_at.ToNanoseconds() if members else 0
        labels = {m.event_id: f"#{i + 1}" for i, m in enumerate(members)}
        events = tree.add("events")
        for member in members:
            offset = (member.occurred_at.ToNanoseconds() - first) / 1e9
            events.add(f"{labels[member.event_id]} +{offset:.0f}s  {member.title}")
        why = tree.add("why")
        for edge in group.edges:
            pair = f"{labels.get(edge.from_event_id, '?')} - {labels.get(edge.to_event_id, '?')}"
            why.add(f"{pair}: {edge.reason} (score {edge.score:.2f})")
        _add_analysis(tree, group)
        console.print(tree)
    grouped = sum(len(g.members) for g in groups)
    console.print(
        f"{len(SCENARIO)} events -> {len(groups)} group(s) holding {grouped} events; "
        f"{len(SCENARIO) - grouped} on their own."
    )
