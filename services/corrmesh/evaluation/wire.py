"""Scenario records as the mesh's messages: events for Ingest, dependencies for Topology.

Resources keep the scenario's kind, namespace and name exactly and no cluster,
so an event's resource and the topology node with the same id are one
resource to Topology and to Correlation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import timestamp_pb2

from corrmesh.evaluation.scenario import ScenarioEvent, Topology, TopologyNode
from corrmesh.v1 import event_pb2, topology_pb2

DOMAINS = {
    "kubernetes": event_pb2.DOMAIN_KUBERNETES,
    "incident": event_pb2.DOMAIN_INCIDENT,
    "dicom": event_pb2.DOMAIN_DICOM,
    "camera": event_pb2.DOMAIN_CAMERA,
    "generic": event_pb2.DOMAIN_GENERIC,
}

SEVERITIES = {
    "critical": event_pb2.SEVERITY_CRITICAL,
    "major": event_pb2.SEVERITY_ERROR,
    "minor": event_pb2.SEVERITY_WARNING,
    "warning": event_pb2.SEVERITY_WARNING,
    "info": event_pb2.SEVERITY_INFO,
}

#: Every edge type of the format becomes a declared dependency ``from -> to``:
#: Topology propagates a failure of ``to`` to ``from``, which is the direction
#: the format gives for calls and depends_on, and keeps owner and host edges
#: connected the same way.
DEPENDENCY_EDGE_TYPES = frozenset({"calls", "owns", "runs_on", "depends_on"})

_STAGES = {
    "received": event_pb2.PROCESSING_STAGE_RECEIVED,
    "stored": event_pb2.PROCESSING_STAGE_STORED,
    "forwarded": event_pb2.PROCESSING_STAGE_FORWARDED,
}

_ALERT_STATUSES = {
    "firing": event_pb2.ALERT_STATUS_FIRING,
    "resolved": event_pb2.ALERT_STATUS_RESOLVED,
}


def _ref(node: TopologyNode) -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(kind=node.kind, namespace=node.namespace, name=node.name)


def _ref_from_id(resource_id: str) -> event_pb2.ResourceRef:
    kind, namespace, name = resource_id.split("/", 2)
    return event_pb2.ResourceRef(kind=kind, namespace=namespace, name=name)


def dependencies(topology: Topology) -> list[topology_pb2.Dependency]:
    """The topology's edges as declared dependencies, in file order.

    An edge whose end is not a node still names a resource by its id; edges of
    other types, and edges from a resource to itself, are left out.
    """
    declared = []
    for edge in topology.edges:
        if edge.type not in DEPENDENCY_EDGE_TYPES or edge.source == edge.target:
            continue
        source = topology.nodes.get(edge.source)
        target = topology.nodes.get(edge.target)
        dependency = topology_pb2.Dependency(description=edge.type)
        # "from" is a Python keyword: reach the field through getattr.
        getattr(dependency, "from").CopyFrom(_ref(source) if source else _ref_from_id(edge.source))
        dependency.to.CopyFrom(_ref(target) if target else _ref_from_id(edge.target))
        declared.append(dependency)
    return declared


def _timestamp(text: str) -> timestamp_pb2.Timestamp | None:
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        return None
    return stamp


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _kubernetes(event: event_pb2.Event, attributes: Mapping[str, str], severity: str) -> None:
    details = event.kubernetes
    details.reason = attributes.get("reason", "")
    details.message = attributes.get("message", "")
    # Kubernetes Events are Normal or Warning; the format keeps only the severity.
    details.event_type = "Normal" if severity == "info" else "Warning"
    count = _int(attributes.get("count", ""))
    if count is not None:
        details.count = max(0, min(count, 2**31 - 1))
    for name in ("first_timestamp", "last_timestamp"):
        stamp = _timestamp(attributes.get(name, ""))
        if stamp is not None:
            getattr(details, name).CopyFrom(stamp)


def _camera(event: event_pb2.Event, attributes: Mapping[str, str], _severity: str) -> None:
    details = event.camera
    details.camera_id = attributes.get("camera_id", "")
    details.controller_id = attributes.get("controller_id", "")
    details.detection_type = attributes.get("detection_type", "")
    try:
        details.confidence = float(attributes.get("confidence", "0") or 0)
    except ValueError:
        details.confidence = 0.0


def _dicom(event: event_pb2.Event, attributes: Mapping[str, str], _severity: str) -> None:
    details = event.dicom
    stage = attributes.get("stage", "")
    if stage == "failed":
        # As Ingest's own DICOM edge does: the failed stage is the step's stage.
        failed = _STAGES.get(
            attributes.get("error_stage", ""), event_pb2.PROCESSING_STAGE_UNSPECIFIED
        )
        details.stage = failed
        details.failed_stage = failed
        details.outcome = event_pb2.PROCESSING_OUTCOME_FAILED
        details.error_message = attributes.get("status", "")
    else:
        details.stage = _STAGES.get(stage, event_pb2.PROCESSING_STAGE_UNSPECIFIED)
        details.outcome = event_pb2.PROCESSING_OUTCOME_SUCCEEDED
    details.association_id = attributes.get("association_id", "")
    details.calling_ae_title = attributes.get("calling_ae", "")
    details.called_ae_title = attributes.get("called_ae", "")
    details.source_ip = attributes.get("source_ip", "")
    details.patient_id = attributes.get("patient_id", "")
    details.accession_number = attributes.get("accession_number", "")
    details.study_instance_uid = attributes.get("study_uid", "")
    details.series_instance_uid = attributes.get("series_uid", "")
    details.sop_instance_uid = attributes.get("sop_instance_uid", "")
    details.modality = attributes.get("modality", "")
    details.completed_at.CopyFrom(event.occurred_at)
    duration_ms = _int(attributes.get("duration_ms", "")) or 0
    details.started_at.FromNanoseconds(event.occurred_at.ToNanoseconds() - duration_ms * 1_000_000)
    # One correlation id per association, as for instances received at the edge.
    event.correlation_id = details.association_id


def _incident(event: event_pb2.Event, attributes: Mapping[str, str], _severity: str) -> None:
    details = event.incident
    details.alert_name = attributes.get("alertname", "")
    details.status = _ALERT_STATUSES.get(
        attributes.get("status", ""), event_pb2.ALERT_STATUS_UNSPECIFIED
    )
    if details.status == event_pb2.ALERT_STATUS_RESOLVED:
        details.ends_at.CopyFrom(event.occurred_at)
    else:
        details.starts_at.CopyFrom(event.occurred_at)


_Details = Callable[[event_pb2.Event, Mapping[str, str], str], None]
#: The label every Prometheus alert carries (a trace anomaly's "status" is no alert).
ALERT_NAME = "alertname"

#: Typed details per domain, and the attribute keys whose presence calls for them
#: (some Kubernetes-domain sets carry metric or alert labels, not Event fields).
DETAILS: dict[str, tuple[_Details, frozenset[str]]] = {
    "kubernetes": (_kubernetes, frozenset({"reason", "message"})),
    "camera": (_camera, frozenset({"camera_id", "controller_id", "detection_type"})),
    "dicom": (_dicom, frozenset({"stage", "association_id", "calling_ae"})),
    "incident": (_incident, frozenset({"alertname", "status"})),
}


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value)


def to_event(item: ScenarioEvent) -> event_pb2.Event:
    """The Event published for one scenario line; its id stays the scenario's."""
    raw = item.raw
    domain = _text(raw, "domain")
    severity = _text(raw, "severity")
    resource = raw.get("resource") or {}
    attributes = {str(k): str(v) for k, v in (raw.get("attributes") or {}).items()}
    if item.service:
        attributes["service"] = item.service
    if domain not in DOMAINS:
        raise ValueError(f"event {item.event_id}: unknown domain {domain!r}")
    event = event_pb2.Event(
        event_id=item.event_id,
        domain=DOMAINS[domain],
        source=_text(raw, "source"),
        resource=event_pb2.ResourceRef(
            kind=_text(resource, "kind"),
            namespace=_text(resource, "namespace"),
            name=_text(resource, "name"),
        ),
        severity=SEVERITIES.get(severity, event_pb2.SEVERITY_UNSPECIFIED),
        title=_text(raw, "title"),
        description=_text(raw, "description"),
        fingerprint=_text(raw, "fingerprint"),
        type=_text(raw, "type"),
        attributes=attributes,
    )
    stamp = _timestamp(item.time)
    if stamp is None:
        raise ValueError(f"event {item.event_id}: time is not RFC 3339")
    event.occurred_at.CopyFrom(stamp)
    mapped = DETAILS.get(domain)
    if mapped is not None and mapped[1] & attributes.keys():
        mapped[0](event, attributes, severity)
    elif ALERT_NAME in attributes:
        # An alertname makes it an alert whatever domain its resource is in
        # (ITBench's alerts fire on Kubernetes workloads): it fires until resolved.
        _incident(event, attributes, severity)
    return event
