"""Event and filter validation: each rule names its field and never echoes values."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from corrmesh.ingest.validation import (
    MAX_BATCH_EVENTS,
    MAX_DESCRIPTION_BYTES,
    MAX_EVENT_BYTES,
    MAX_TITLE_BYTES,
    validate_batch_size,
    validate_event,
    validate_filter,
)
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.ingest import make_event

PHI = "DOE^JANE 1970-01-01"


def _violations(event: event_pb2.Event, prefix: str = "events[3]") -> list[tuple[str, str]]:
    violations = FieldViolations(prefix=prefix)
    validate_event(event, violations)
    return violations.items


def _fields(event: event_pb2.Event) -> list[str]:
    return [path for path, _ in _violations(event)]


def test_a_complete_event_is_valid() -> None:
    assert _violations(make_event()) == []
    minimal = event_pb2.Event(domain=event_pb2.DOMAIN_GENERIC, source="s", title="t")
    minimal.occurred_at.GetCurrentTime()
    assert _violations(minimal) == []


def test_required_fields() -> None:
    assert _fields(event_pb2.Event()) == [
        "events[3].domain",
        "events[3].source",
        "events[3].title",
        "events[3].occurred_at",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"domain": 17}, "events[3].domain"),
        ({"severity": 9}, "events[3].severity"),
        ({"event_id": "e" * 129}, "events[3].event_id"),
        ({"correlation_id": "c" * 129}, "events[3].correlation_id"),
        ({"title": "t" * (MAX_TITLE_BYTES + 1)}, "events[3].title"),
        # 1 KiB is bytes, not characters: 342 three-byte characters exceed it.
        ({"title": "€" * 342}, "events[3].title"),
        ({"description": "d" * (MAX_DESCRIPTION_BYTES + 1)}, "events[3].description"),
        ({"source": "s" * 257}, "events[3].source"),
        ({"type": "t" * 257}, "events[3].type"),
        ({"resource": event_pb2.ResourceRef(name="n")}, "events[3].resource.kind"),
        (
            {"resource": event_pb2.ResourceRef(kind="Pod", name="n" * 254)},
            "events[3].resource.name",
        ),
        ({"source": "kube\x00rnetes"}, "events[3].source"),
        ({"event_id": "e\x00"}, "events[3].event_id"),
        ({"resource": event_pb2.ResourceRef(cluster="\x00")}, "events[3].resource.cluster"),
        ({"attributes": {"": "v"}}, "events[3].attributes"),
        ({"attributes": {f"k{i}": "v" for i in range(257)}}, "events[3].attributes"),
        ({"attributes": {"k" * 257: "v"}}, "events[3].attributes"),
        # Keys and values are capped in bytes too: 129 two-byte characters are 258.
        ({"attributes": {"é" * 129: "v"}}, "events[3].attributes"),
        ({"attributes": {"k": "v" * 8193}}, "events[3].attributes"),
        ({"attributes": {"k": "€" * 2731}}, "events[3].attributes"),
        ({"fingerprint": "f" * 1025}, "events[3].fingerprint"),
        ({"fingerprint": "€" * 342}, "events[3].fingerprint"),
        ({"description": "€" * 21846}, "events[3].description"),
    ],
)
def test_each_rule_names_its_field(change: dict[str, Any], field: str) -> None:
    assert _fields(make_event(**change)) == [field]


def test_boundaries_are_inclusive() -> None:
    event = make_event(
        event_id="e" * 128,
        title="t" * MAX_TITLE_BYTES,
        fingerprint="€" * 341 + "f",
        description="d" * MAX_DESCRIPTION_BYTES,
        resource=event_pb2.ResourceRef(),
        attributes={"é" * 128: "€" * 2730 + "vv", "k" * 256: "v"},
    )
    assert _violations(event) == []


@pytest.mark.parametrize(
    "stamp",
    [
        timestamp_pb2.Timestamp(seconds=253_402_300_800),  # year 10000
        timestamp_pb2.Timestamp(seconds=-62_135_596_801),  # before year 1
        timestamp_pb2.Timestamp(seconds=0, nanos=-1),
        timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
    ],
)
def test_occurred_at_must_be_a_valid_timestamp(stamp: timestamp_pb2.Timestamp) -> None:
    event = make_event()
    event.occurred_at.CopyFrom(stamp)
    assert _violations(event) == [("events[3].occurred_at", "is not a valid timestamp")]


def test_the_whole_event_has_a_size_cap() -> None:
    event = make_event(attributes={f"k{i}": "v" * 8000 for i in range(40)})
    assert event.ByteSize() > MAX_EVENT_BYTES
    assert _fields(event) == ["events[3]"]


def test_messages_never_contain_values() -> None:
    event = make_event(
        title=PHI * 100,
        source=PHI * 20,
        event_id=PHI * 10,
        resource=event_pb2.ResourceRef(name=PHI),
        attributes={"": PHI, PHI * 20: PHI * 1000},
    )
    violations = _violations(event)
    assert len(violations) >= 6
    for path, description in violations:
        assert "DOE" not in path + description and "1970" not in path + description


def test_output_only_fields_are_not_validated() -> None:
    event = make_event(sequence=-4)
    event.trace_context.traceparent = "garbage"
    assert _violations(event) == []


def test_batch_size_limit() -> None:
    fine = FieldViolations()
    validate_batch_size(MAX_BATCH_EVENTS, fine)
    assert not fine
    too_many = FieldViolations()
    validate_batch_size(MAX_BATCH_EVENTS + 1, too_many)
    assert [path for path, _ in too_many.items] == ["events"]


def test_filter_validation() -> None:
    violations = FieldViolations()
    validate_filter(
        ingest_pb2.EventFilter(
            domains=[event_pb2.DOMAIN_DICOM, event_pb2.DOMAIN_UNSPECIFIED, 12],  # type: ignore[list-item]
            min_severity=8,  # type: ignore[arg-type]
            occurred_before=timestamp_pb2.Timestamp(nanos=-3),
        ),
        violations.nested("filter"),
    )
    assert [path for path, _ in violations.items] == [
        "filter.domains[1]",
        "filter.domains[2]",
        "filter.min_severity",
        "filter.occurred_before",
    ]
    too_many = FieldViolations()
    validate_filter(ingest_pb2.EventFilter(sources=["s"] * 1001), too_many)
    assert [path for path, _ in too_many.items] == ["sources"]
    valid = FieldViolations()
    validate_filter(ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_CAMERA]), valid)
    assert not valid


def _camera(**fields: Any) -> event_pb2.Event:
    detection: dict[str, Any] = {
        "camera_id": "cam-lobby",
        "controller_id": "nvr-1",
        "detection_type": "person",
        "confidence": 0.87,
    }
    detection.update(fields)
    return make_event(domain=event_pb2.DOMAIN_CAMERA, camera=event_pb2.CameraDetection(**detection))


@pytest.mark.parametrize("confidence", [0.0, 1.0, 0.5])
def test_a_camera_detection_is_valid(confidence: float) -> None:
    assert _violations(_camera(confidence=confidence)) == []


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"camera_id": ""}, ["events[3].camera.camera_id"]),
        ({"controller_id": "  "}, ["events[3].camera.controller_id"]),
        ({"detection_type": ""}, ["events[3].camera.detection_type"]),
        ({"camera_id": "c" * 257}, ["events[3].camera.camera_id"]),
        ({"zone": "door\x00"}, ["events[3].camera.zone"]),
        ({"confidence": 1.01}, ["events[3].camera.confidence"]),
        ({"confidence": -0.1}, ["events[3].camera.confidence"]),
        ({"confidence": float("nan")}, ["events[3].camera.confidence"]),
        ({"confidence": float("inf")}, ["events[3].camera.confidence"]),
    ],
)
def test_camera_detection_rules(change: dict[str, Any], fields: list[str]) -> None:
    assert _fields(_camera(**change)) == fields


def test_details_must_match_the_domain() -> None:
    camera = _camera()
    camera.domain = event_pb2.DOMAIN_GENERIC
    dicom = make_event(
        domain=event_pb2.DOMAIN_KUBERNETES,
        dicom=event_pb2.DicomProcessingStep(stage=99),  # type: ignore[arg-type]
    )
    assert _fields(camera) == ["events[3].camera"]
    assert _fields(dicom) == ["events[3].dicom", "events[3].dicom.stage"]
