"""Alertmanager's webhook payload (version 4) as events.

Each alert of a notification becomes one ``DOMAIN_INCIDENT`` event:

* labels become attributes unchanged; Alertmanager's own facts go under
  ``alertmanager.*`` keys (label names cannot contain dots, so they never
  collide), annotations under ``annotation.<name>``;
* ``fingerprint`` is Alertmanager's fingerprint, ``type`` the ``alertname``;
* ``incident`` details carry status, start, end, generator URL and receiver;
* a resolved alert is an event of its own with status ``RESOLVED``, the
  attribute ``alertmanager.status=resolved``, severity INFO and ``occurred_at``
  = ``endsAt``. It shares the firing event's ``correlation_id``
  (``alertmanager:<fingerprint>:<startsAt>``), so the correlator can close
  what the firing event opened.

``event_id`` is derived from fingerprint, start and status: Alertmanager
re-sends firing alerts on every group change and repeat interval, and each
is stored once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from google.protobuf import timestamp_pb2

from corrmesh.ingest.validation import MAX_ATTRIBUTE_VALUE_BYTES
from corrmesh.v1 import event_pb2

SOURCE = "alertmanager"
SUPPORTED_VERSION = "4"
STATUS_ATTRIBUTE = "alertmanager.status"
FINGERPRINT_ATTRIBUTE = "alertmanager.fingerprint"
_STATUSES = {
    "firing": event_pb2.ALERT_STATUS_FIRING,
    "resolved": event_pb2.ALERT_STATUS_RESOLVED,
}
_SEVERITIES = {
    "critical": event_pb2.SEVERITY_CRITICAL,
    "page": event_pb2.SEVERITY_CRITICAL,
    "error": event_pb2.SEVERITY_ERROR,
    "high": event_pb2.SEVERITY_ERROR,
    "warning": event_pb2.SEVERITY_WARNING,
    "medium": event_pb2.SEVERITY_WARNING,
    "info": event_pb2.SEVERITY_INFO,
    "low": event_pb2.SEVERITY_INFO,
    "none": event_pb2.SEVERITY_INFO,
}
#: Labels that name a Kubernetes object, as kube-state-metrics and cAdvisor set them.
_RESOURCE_LABELS = (
    ("pod", "Pod"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("job_name", "Job"),
    ("service", "Service"),
    ("node", "Node"),
)
#: Alertmanager writes this for "not ended yet".
_ZERO_TIME_PREFIX = "0001-01-01"


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 payload; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field, "must be an object")
    return value


def _labels(value: Any, field: str) -> dict[str, str]:
    labels = _object(value, field)
    for key, item in labels.items():
        if not isinstance(item, str):
            raise PayloadError(f"{field}.{key}", "must be a string")
    return dict(labels)


def _string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(field, "must be a string")
    return value


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> tuple[int, int]:
    """(seconds, nanos) of an RFC 3339 time; raises ValueError.

    Cached: the alerts of one notification mostly share their times, and
    Alertmanager sends the same alerts again and again; parsing is the
    costliest step of turning an alert into an event.
    """
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp.seconds, stamp.nanos


def _time(value: Any, field: str) -> timestamp_pb2.Timestamp | None:
    """An RFC 3339 time, or None for absent/zero ("0001-01-01T00:00:00Z")."""
    text = _string(value, field)
    if not text or text.startswith(_ZERO_TIME_PREFIX):
        return None
    try:
        seconds, nanos = _parse_time(text)
    except ValueError:
        raise PayloadError(field, "must be an RFC 3339 time") from None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _clip(text: str) -> str:
    # Annotations are prose (runbooks): keep the event within validation's caps.
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_ATTRIBUTE_VALUE_BYTES:
        return text
    return encoded[: MAX_ATTRIBUTE_VALUE_BYTES - 3].decode("utf-8", "ignore") + "..."


def _fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager always sends one; this stands in for a sender that does not."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(f"{key}\x00{labels[key]}\x00".encode())
    return digest.hexdigest()[:16]


def _resource(labels: Mapping[str, str]) -> event_pb2.ResourceRef | None:
    for label, kind in _RESOURCE_LABELS:
        if labels.get(label):
            return event_pb2.ResourceRef(
                cluster=labels.get("cluster", ""),
                kind=kind,
                namespace=labels.get("namespace", "") if kind != "Node" else "",
                name=labels[label],
            )
    return None


def alert_event(
    alert: Mapping[str, Any], payload: Mapping[str, Any], index: int, now: timestamp_pb2.Timestamp
) -> event_pb2.Event:
    """The event for ``payload["alerts"][index]``; raises PayloadError."""
    field = f"alerts[{index}]"
    status_text = _string(alert.get("status", payload.get("status")), f"{field}.status")
    status = _STATUSES.get(status_text)
    if status is None:
        raise PayloadError(f"{field}.status", "must be 'firing' or 'resolved'")
    labels = _labels(alert.get("labels"), f"{field}.labels")
    annotations = _labels(alert.get("annotations"), f"{field}.annotations")
    starts = _time(alert.get("startsAt"), f"{field}.startsAt")
    ends = _time(alert.get("endsAt"), f"{field}.endsAt")
    fingerprint = _string(alert.get("fingerprint"), f"{field}.fingerprint") or _fingerprint(labels)
    receiver = _string(payload.get("receiver"), "receiver")
    alert_name = labels.get("alertname", "")
    resolved = status == event_pb2.ALERT_STATUS_RESOLVED

    start_key = f"{starts.seconds}.{starts.nanos:09d}" if starts else "0"
    correlation_id = f"alertmanager:{fingerprint}:{start_key}"
    summary = annotations.get("summary") or annotations.get("message") or alert_name or "alert"
    event = event_pb2.Event(
        event_id=f"{correlation_id}:{status_text}",
        correlation_id=correlation_id,
        domain=event_pb2.DOMAIN_INCIDENT,
        source=SOURCE,
        severity=(
            event_pb2.SEVERITY_INFO
            if resolved
            else _SEVERITIES.get(labels.get("severity", "").lower(), event_pb2.SEVERITY_WARNING)
        ),
        title=("[RESOLVED] " if resolved else "")
        + (f"{alert_name}: {summary}" if alert_name and summary != alert_name else summary),
        description=annotations.get("description", ""),
        fingerprint=fingerprint,
        type=alert_name,
        incident=event_pb2.IncidentDetails(
            alert_name=alert_name,
            status=status,
            generator_url=_string(alert.get("generatorURL"), f"{field}.generatorURL"),
            receiver=receiver,
        ),
    )
    if starts is not None:
        event.incident.starts_at.CopyFrom(starts)
    if ends is not None:
        event.incident.ends_at.CopyFrom(ends)
    occurred = (ends if resolved else starts) or starts or now
    event.occurred_at.CopyFrom(occurred)
    resource = _resource(labels)
    if resource is not None:
        event.resource.CopyFrom(resource)
    attributes = event.attributes
    attributes.update(labels)
    for key, value in annotations.items():
        attributes[f"annotation.{key}"] = _clip(value)
    attributes[STATUS_ATTRIBUTE] = status_text
    attributes[FINGERPRINT_ATTRIBUTE] = fingerprint
    attributes["alertmanager.receiver"] = receiver
    group_key = _string(payload.get("groupKey"), "groupKey")
    if group_key:
        attributes["alertmanager.group_key"] = _clip(group_key)
    return event


def payload_events(payload: Any, now: timestamp_pb2.Timestamp) -> list[event_pb2.Event]:
    """Every alert of a v4 notification as an event; raises PayloadError naming the field."""
    if not isinstance(payload, dict):
        raise PayloadError("", "the body must be a JSON object")
    version = payload.get("version")
    if version != SUPPORTED_VERSION:
        raise PayloadError("version", f"must be {SUPPORTED_VERSION!r} (Alertmanager webhook v4)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts", "must be a list")
    events = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{index}]", "must be an object")
        events.append(alert_event(alert, payload, index, now))
    return events
