"""Validation of published events.

Each event is checked on its own and every problem is reported as a field
path (``events[3].occurred_at``) with a description. Descriptions never quote
the offending value: events may carry PHI (DICOM patient ids, free text).
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import timestamp_pb2

from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import event_pb2, ingest_pb2

#: More events than this in one call reject the whole call (field ``events``).
MAX_BATCH_EVENTS = 10_000

# Column-backed strings: their caps match the String(n) columns in models.py.
MAX_ID_CHARS = 128
MAX_SOURCE_CHARS = 256
MAX_TYPE_CHARS = 256
#: Kubernetes names and namespaces are at most 253 characters.
MAX_RESOURCE_CHARS = 253

# Size caps (UTF-8 bytes) that keep one event from bloating the log.
MAX_TITLE_BYTES = 1024
MAX_DESCRIPTION_BYTES = 64 * 1024
MAX_FINGERPRINT_BYTES = 1024
MAX_ATTRIBUTES = 256
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 8 * 1024
#: The whole serialized event, details included.
MAX_EVENT_BYTES = 256 * 1024

#: Values per repeated EventFilter field (they become SQL IN lists).
MAX_FILTER_VALUES = 1000

#: google.protobuf.Timestamp's valid range: 0001-01-01 to 9999-12-31.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799

_DOMAINS = frozenset(event_pb2.Domain.values()) - {event_pb2.DOMAIN_UNSPECIFIED}
_SEVERITIES = frozenset(event_pb2.Severity.values())


def _utf8_len(text: str) -> int:
    # ASCII is one byte per character: encode only the rest.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def valid_timestamp(value: timestamp_pb2.Timestamp) -> bool:
    """True when ``value`` is inside google.protobuf.Timestamp's documented range."""
    return _MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos <= 999_999_999


def _check_bytes(violations: FieldViolations, path: str, text: str, limit: int) -> None:
    if _utf8_len(text) > limit:
        violations.add(path, f"must be at most {limit} bytes")


def _check_column(violations: FieldViolations, path: str, text: str, limit: int) -> None:
    """A string stored in its own column: a character cap and no NUL (PostgreSQL refuses it)."""
    if len(text) > limit:
        violations.add(path, f"must be at most {limit} characters")
    if "\x00" in text:
        violations.add(path, "must not contain NUL characters")


_RESOURCE_COLUMNS = tuple(
    (name, f"resource.{name}")
    for name in ("cluster", "kind", "namespace", "name", "uid", "api_version")
)
#: UTF-8 needs at most this many bytes for one character.
_MAX_UTF8_BYTES = 4


def _validate_resource(resource: event_pb2.ResourceRef, violations: FieldViolations) -> None:
    if resource.name and not resource.kind:
        violations.add("resource.kind", "is required when resource.name is set")
    for name, path in _RESOURCE_COLUMNS:
        _check_column(violations, path, getattr(resource, name), MAX_RESOURCE_CHARS)


def _validate_attributes(
    attributes: Mapping[str, str], event_bytes: int, violations: FieldViolations
) -> None:
    """Counts, empty keys, and sizes; ``event_bytes`` (the serialized event's size)
    bounds every value, so values are only measured when the event is large."""
    if len(attributes) > MAX_ATTRIBUTES:
        violations.add("attributes", f"must have at most {MAX_ATTRIBUTES} entries")
    # Keys are named by position only: a key may itself be sensitive.
    if "" in attributes:
        violations.add("attributes", "keys must not be empty")
    longest_key = max(map(len, attributes), default=0)
    if longest_key * _MAX_UTF8_BYTES > MAX_ATTRIBUTE_KEY_BYTES and any(
        _utf8_len(key) > MAX_ATTRIBUTE_KEY_BYTES for key in attributes
    ):
        violations.add("attributes", f"keys must be at most {MAX_ATTRIBUTE_KEY_BYTES} bytes")
    if event_bytes > MAX_ATTRIBUTE_VALUE_BYTES and any(
        _utf8_len(value) > MAX_ATTRIBUTE_VALUE_BYTES for value in attributes.values()
    ):
        violations.add("attributes", f"values must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes")


#: Camera, controller and detection-type identifiers (UniFi ids, MACs, names).
MAX_CAMERA_ID_CHARS = 256
_STAGES = frozenset(event_pb2.ProcessingStage.values())
_OUTCOMES = frozenset(event_pb2.ProcessingOutcome.values())


def _validate_camera(event: event_pb2.Event, violations: FieldViolations) -> None:
    """A smart detection: who saw what, with a confidence that is a probability."""
    camera = event.camera
    if event.domain != event_pb2.DOMAIN_CAMERA:
        violations.add("camera", "is only allowed on DOMAIN_CAMERA events")
    for name in ("camera_id", "controller_id", "detection_type"):
        value = getattr(camera, name)
        if not value.strip():
            violations.add(f"camera.{name}", "is required")
        else:
            _check_column(violations, f"camera.{name}", value, MAX_CAMERA_ID_CHARS)
    _check_column(violations, "camera.zone", camera.zone, MAX_CAMERA_ID_CHARS)
    # Written so NaN fails too: every comparison with NaN is false.
    if not 0.0 <= camera.confidence <= 1.0:
        violations.add("camera.confidence", "must be between 0 and 1")


def _validate_dicom(event: event_pb2.Event, violations: FieldViolations) -> None:
    step = event.dicom
    if event.domain != event_pb2.DOMAIN_DICOM:
        violations.add("dicom", "is only allowed on DOMAIN_DICOM events")
    for name in ("stage", "failed_stage"):
        if getattr(step, name) not in _STAGES:
            violations.add(f"dicom.{name}", "is not a known ProcessingStage")
    if step.outcome not in _OUTCOMES:
        violations.add("dicom.outcome", "is not a known ProcessingOutcome")
    if step.HasField("started_at") and not valid_timestamp(step.started_at):
        violations.add("dicom.started_at", "is not a valid timestamp")
    if step.HasField("completed_at") and not valid_timestamp(step.completed_at):
        violations.add("dicom.completed_at", "is not a valid timestamp")


def validate_event(event: event_pb2.Event, violations: FieldViolations) -> None:
    """Adds a violation for each problem of ``event`` (paths relative to the event).

    Output-only fields (sequence, ingested_at, trace_context) are not checked:
    Ingest overwrites them.
    """
    before = len(violations.items)
    # No string in the event is longer than the event: size checks below it are skipped.
    event_bytes = event.ByteSize()
    if event.domain == event_pb2.DOMAIN_UNSPECIFIED:
        violations.add("domain", "is required")
    elif event.domain not in _DOMAINS:
        violations.add("domain", "is not a known Domain")
    if not event.source:
        violations.add("source", "is required")
    else:
        _check_column(violations, "source", event.source, MAX_SOURCE_CHARS)
    if not event.title:
        violations.add("title", "is required")
    elif event_bytes > MAX_TITLE_BYTES:
        _check_bytes(violations, "title", event.title, MAX_TITLE_BYTES)
    if not event.HasField("occurred_at"):
        violations.add("occurred_at", "is required")
    elif not valid_timestamp(event.occurred_at):
        violations.add("occurred_at", "is not a valid timestamp")
    if event.severity not in _SEVERITIES:
        violations.add("severity", "is not a known Severity")
    _check_column(violations, "event_id", event.event_id, MAX_ID_CHARS)
    _check_column(violations, "correlation_id", event.correlation_id, MAX_ID_CHARS)
    _check_column(violations, "type", event.type, MAX_TYPE_CHARS)
    if event_bytes > MAX_DESCRIPTION_BYTES:
        _check_bytes(violations, "description", event.description, MAX_DESCRIPTION_BYTES)
    if event_bytes > MAX_FINGERPRINT_BYTES:
        _check_bytes(violations, "fingerprint", event.fingerprint, MAX_FINGERPRINT_BYTES)
    if event.HasField("resource"):
        _validate_resource(event.resource, violations)
    if event.attributes:
        _validate_attributes(event.attributes, event_bytes, violations)
    details = event.WhichOneof("details")
    if details == "camera":
        _validate_camera(event, violations)
    elif details == "dicom":
        _validate_dicom(event, violations)
    if len(violations.items) == before and event_bytes > MAX_EVENT_BYTES:
        violations.add("", f"the serialized event must be at most {MAX_EVENT_BYTES} bytes")


def validate_batch_size(count: int, violations: FieldViolations, field: str = "events") -> None:
    """A batch larger than MAX_BATCH_EVENTS is rejected as a whole."""
    if count > MAX_BATCH_EVENTS:
        violations.add(field, f"must hold at most {MAX_BATCH_EVENTS} events per call")


def validate_filter(event_filter: ingest_pb2.EventFilter, violations: FieldViolations) -> None:
    """Checks an EventFilter's enum values and time bounds (paths relative to the filter)."""
    for repeated in ("domains", "sources", "correlation_ids", "clusters", "namespaces", "types"):
        if len(getattr(event_filter, repeated)) > MAX_FILTER_VALUES:
            violations.add(repeated, f"must have at most {MAX_FILTER_VALUES} values")
    for index, domain in enumerate(event_filter.domains):
        if domain not in _DOMAINS:
            violations.add(f"domains[{index}]", "is not a known Domain")
    if event_filter.min_severity not in _SEVERITIES:
        violations.add("min_severity", "is not a known Severity")
    for name in ("occurred_after", "occurred_before"):
        if event_filter.HasField(name) and not valid_timestamp(getattr(event_filter, name)):
            violations.add(name, "is not a valid timestamp")
