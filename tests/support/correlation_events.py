"""Events and an engine for Correlation tests."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta

from corrmesh.correlation.config import default_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.strategies import Relation
from corrmesh.v1 import correlation_pb2, event_pb2

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def pod(name: str, namespace: str = "shop", cluster: str = "prod-eu") -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(cluster=cluster, kind="Pod", namespace=namespace, name=name)


def deployment(
    name: str, namespace: str = "shop", cluster: str = "prod-eu"
) -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(cluster=cluster, kind="Deployment", namespace=namespace, name=name)


def event(
    at: float,
    *,
    event_id: str | None = None,
    fingerprint: str = "",
    resource: event_pb2.ResourceRef | None = None,
    title: str | None = None,
    severity: int = event_pb2.SEVERITY_WARNING,
    sequence: int | None = None,
    source: str | None = None,
    domain: int = event_pb2.DOMAIN_KUBERNETES,
    description: str = "",
    type: str = "",
) -> event_pb2.Event:
    """An event ``at`` seconds after BASE_TIME (event time).

    Unless given, title and source are unique to the event, so that only what
    a test sets up (fingerprint, resource, words, source) can correlate it.
    """
    number = next(_ids)
    unique = uuid.uuid5(uuid.NAMESPACE_OID, str(number)).hex
    built = event_pb2.Event(
        event_id=event_id or f"e-{number}",
        correlation_id=f"c-{number}",
        domain=domain,  # type: ignore[arg-type]
        source=source or f"monitor-{unique[:10]}",
        title=title or f"signal-{unique}",
        description=description,
        type=type,
        severity=severity,  # type: ignore[arg-type]
        fingerprint=fingerprint,
        sequence=sequence if sequence is not None else number,
    )
    if resource is not None:
        built.resource.CopyFrom(resource)
    built.occurred_at.FromDatetime(BASE_TIME + timedelta(seconds=at))
    return built


def no_topology(_a: str, _b: str) -> Relation | None:
    return None


class Feeder:
    """Feeds events to an engine in order, numbering their sequences."""

    def __init__(self, engine: CorrelationEngine | None = None) -> None:
        self.engine = engine or CorrelationEngine(default_config())
        self.sequence = 0

    def feed(
        self, built: event_pb2.Event, relation=no_topology
    ) -> list[correlation_pb2.GroupUpdate]:
        self.sequence += 1
        built.sequence = self.sequence
        plan = self.engine.prepare(built)
        self.engine.apply(plan, relation)
        # One event per batch, as the consumer commits it: every update it caused.
        updates = self.engine.take_changes().updates
        self.engine.committed()
        return updates


def incident_storm(count: int, seed: int = 7) -> list[event_pb2.Event]:
    """Many small incidents over a long stretch of event time.

    Events are up to 20 s out of order (inside the default 60 s lateness);
    some bridge two groups, so merges happen, and the window slides past
    old groups, so evictions do too. Sequences are 1..count.
    """
    rng = random.Random(seed)
    events = []
    for i in range(count):
        at = i * 2.0 + rng.uniform(-20, 0)
        incident = (i // 6) % 40
        kind = rng.random()
        if kind < 0.4:
            built = event(at, event_id=f"ev-{i}", fingerprint=f"fp-{incident}")
        elif kind < 0.8:
            built = event(at, event_id=f"ev-{i}", resource=pod(f"pod-{incident}"))
        else:
            # Bridges: the incident's two groups, or this incident and the one before.
            bridged = incident if kind < 0.9 else (incident - 1) % 40
            built = event(
                at,
                event_id=f"ev-{i}",
                fingerprint=f"fp-{incident}",
                resource=pod(f"pod-{bridged}"),
            )
        built.sequence = i + 1
        built.severity = rng.choice([1, 2, 3, 4])  # type: ignore[assignment]
        events.append(built)
    return events


def camera(
    at: float,
    camera_id: str,
    detection_type: str = "person",
    controller_id: str = "nvr-1",
    *,
    event_id: str | None = None,
    confidence: float = 0.9,
) -> event_pb2.Event:
    """A smart detection of ``camera_id`` ``at`` seconds after BASE_TIME."""
    built = event(
        at,
        event_id=event_id,
        domain=event_pb2.DOMAIN_CAMERA,
        source=f"protect/{controller_id}",
        title=f"{detection_type.capitalize()} detected",
        type=detection_type,
        severity=event_pb2.SEVERITY_INFO,
    )
    built.camera.camera_id = camera_id
    built.camera.controller_id = controller_id
    built.camera.detection_type = detection_type
    built.camera.confidence = confidence
    built.resource.kind = "Camera"
    built.resource.name = camera_id
    return built


#: A small site on one controller: four cameras along one path, and the walk
#: in seconds from each camera to the next.
SITE_PATH = ["cam-door", "cam-hall", "cam-yard", "cam-gate"]
SITE_WALKS = [4.0, 9.0, 3.0]


def site_passes(
    count: int, start: float = 0.0, gap: float = 60.0, seed: int = 3
) -> list[event_pb2.Event]:
    """``count`` people walking SITE_PATH, one every ``gap`` s, in and out by turns.

    Each walk takes its SITE_WALKS time give or take 10 %; the hall -> yard walk
    (9 s) therefore sometimes takes longer than the 10 s multi-camera window.
    """
    rng = random.Random(seed)
    events = []
    for number in range(count):
        path = SITE_PATH if number % 2 == 0 else SITE_PATH[::-1]
        walks = SITE_WALKS if number % 2 == 0 else SITE_WALKS[::-1]
        at = start + number * gap
        for index, camera_id in enumerate(path):
            if index:
                at += walks[index - 1] * rng.uniform(0.9, 1.1)
            events.append(camera(at, camera_id, event_id=f"pass-{number}-{camera_id}"))
    return events


def site_crossing(at: float) -> list[event_pb2.Event]:
    """Two people crossing SITE_PATH from ``at``: one in from the door, one out
    from the yard, on the site's usual walks."""
    return [
        camera(at, "cam-door", event_id="in-door"),
        camera(at + 0.5, "cam-yard", event_id="out-yard"),
        camera(at + 4.0, "cam-hall", event_id="in-hall"),
        camera(at + 9.5, "cam-hall", event_id="out-hall"),
        camera(at + 13.0, "cam-yard", event_id="in-yard"),
        camera(at + 13.5, "cam-door", event_id="out-door"),
    ]


_POD_MESSAGES = {
    "FailedScheduling": "0/4 nodes are available: 4 Insufficient cpu.",
    "Killing": "Stopping container server",
    "Scheduled": "Successfully assigned shop/{pod} to node-1",
    "Pulled": 'Container image "server:v1" already present on machine',
}


def pod_event(
    at: float, pod_name: str, reason: str, *, count: int = 1, event_id: str | None = None
) -> event_pb2.Event:
    """A Kubernetes Event about Pod ``pod_name`` with its reason, message and count."""
    message = _POD_MESSAGES.get(reason, reason).format(pod=pod_name)
    warning = reason == "FailedScheduling"
    built = event(
        at,
        event_id=event_id,
        resource=pod(pod_name),
        title=f"Pod {pod_name}: {message}",
        description=message,
        source="kubernetes",
        type=reason,
        fingerprint=f"k8s/shop/{pod_name}/{reason}",
        severity=event_pb2.SEVERITY_WARNING if warning else event_pb2.SEVERITY_INFO,
    )
    details = built.kubernetes
    details.reason, details.message, details.count = reason, message, count
    details.event_type = "Warning" if warning else "Normal"
    return built


def pending_pod_events() -> list[event_pb2.Event]:
    """A scale-out beyond capacity: two Pods cannot be scheduled, the scheduler
    says so again half an hour later, and the scale-down deletes them an hour in."""
    return [
        pod_event(0, "email-x1", "FailedScheduling", event_id="x1-pending"),
        pod_event(1, "email-x2", "FailedScheduling", event_id="x2-pending"),
        pod_event(1800, "email-x1", "FailedScheduling", count=8, event_id="x1-again"),
        pod_event(1802, "email-x2", "FailedScheduling", count=8, event_id="x2-again"),
        pod_event(3600, "email-x1", "Killing", event_id="x1-killed"),
        pod_event(3601, "email-x2", "Killing", event_id="x2-killed"),
    ]
