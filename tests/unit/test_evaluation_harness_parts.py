"""The harness's parts without a mesh: mapping to messages, collecting, reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrmesh.evaluation.answer import collect, read_answer, write_answer
from corrmesh.evaluation.report import Outcome, markdown, rows
from corrmesh.evaluation.scenario import ScenarioEvent, find_scenarios, load_scenario
from corrmesh.evaluation.scoring import Scores
from corrmesh.evaluation.wire import dependencies, to_event
from corrmesh.ingest.validation import validate_event
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.evaluation import event, write_scenario


def _item(record: dict) -> ScenarioEvent:
    r = record["resource"]
    return ScenarioEvent(
        record["id"],
        record["time"],
        f"{r['kind']}/{r['namespace']}/{r['name']}",
        record["service"],
        record,
    )


def _accepted_by_ingest(message: event_pb2.Event) -> None:
    violations = FieldViolations()
    validate_event(message, violations)
    assert violations.items == []


KUBERNETES_ATTRIBUTES = {
    "reason": "BackOff",
    "message": "Back-off restarting failed container server in pod cart-1",
    "count": "12",
    "first_timestamp": "2023-12-31T23:59:00Z",
    "last_timestamp": "2024-01-01T00:00:01Z",
    "node": "node-a",
    "owner_kind": "ReplicaSet",
    "owner_name": "cart-5d9",
    "cluster": "prod",
}


def test_kubernetes_event_keeps_id_time_fields_and_gets_typed_details() -> None:
    record = event(
        7,
        1.5,
        "pod/shop/cart-1",
        service="cart",
        title="Back-off restarting failed container",
        fingerprint="fp-1",
        source="kubernetes",
        severity="minor",
        type_="BackOff",
        attributes=KUBERNETES_ATTRIBUTES,
    )
    message = to_event(_item(record))
    _accepted_by_ingest(message)
    assert message.event_id == "e-000007"
    assert message.occurred_at.ToJsonString() == "2024-01-01T00:00:01.500Z"
    assert message.domain == event_pb2.DOMAIN_KUBERNETES
    assert message.severity == event_pb2.SEVERITY_WARNING
    assert (message.source, message.type, message.fingerprint) == ("kubernetes", "BackOff", "fp-1")
    ref = message.resource
    assert (ref.cluster, ref.kind, ref.namespace, ref.name) == ("", "pod", "shop", "cart-1")
    assert message.attributes["service"] == "cart"
    assert message.attributes["node"] == "node-a"
    details = message.kubernetes
    assert (details.reason, details.count, details.event_type) == ("BackOff", 12, "Warning")
    assert details.first_timestamp.ToJsonString() == "2023-12-31T23:59:00Z"
    assert details.last_timestamp.ToJsonString() == "2024-01-01T00:00:01Z"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", event_pb2.SEVERITY_CRITICAL),
        ("major", event_pb2.SEVERITY_ERROR),
        ("minor", event_pb2.SEVERITY_WARNING),
        ("warning", event_pb2.SEVERITY_WARNING),
        ("info", event_pb2.SEVERITY_INFO),
    ],
)
def test_severities(severity: str, expected: int) -> None:
    assert to_event(_item(event(1, 0, "pod//a", severity=severity))).severity == expected


def test_metric_events_of_the_kubernetes_domain_carry_no_event_details() -> None:
    record = event(1, 0, "pod//orders-1", service="", attributes={"kpi": "cpu", "direction": "up"})
    message = to_event(_item(record))
    _accepted_by_ingest(message)
    assert message.WhichOneof("details") is None
    assert "service" not in message.attributes


def test_camera_dicom_and_incident_details() -> None:
    camera = to_event(
        _item(
            event(
                1,
                0,
                "camera/nvr-1/front",
                domain="camera",
                severity="info",
                attributes={
                    "camera_id": "front",
                    "controller_id": "nvr-1",
                    "detection_type": "person",
                    "confidence": "0.88",
                },
            )
        )
    )
    _accepted_by_ingest(camera)
    assert camera.camera.detection_type == "person"
    assert camera.camera.confidence == pytest.approx(0.88)

    dicom = to_event(
        _item(
            event(
                2,
                10,
                "ae//MODALITY1",
                domain="dicom",
                attributes={
                    "calling_ae": "MODALITY1",
                    "called_ae": "PACS",
                    "association_id": "assoc-1",
                    "stage": "failed",
                    "error_stage": "stored",
                    "status": "0xA700",
                    "duration_ms": "250",
                    "study_uid": "1.2.3",
                },
            )
        )
    )
    _accepted_by_ingest(dicom)
    step = dicom.dicom
    assert step.outcome == event_pb2.PROCESSING_OUTCOME_FAILED
    assert step.stage == step.failed_stage == event_pb2.PROCESSING_STAGE_STORED
    assert (step.study_instance_uid, step.error_message) == ("1.2.3", "0xA700")
    assert step.completed_at.ToNanoseconds() - step.started_at.ToNanoseconds() == 250_000_000
    assert dicom.correlation_id == "assoc-1"

    alert = to_event(
        _item(
            event(
                3,
                5,
                "service/shop/api",
                domain="incident",
                source="alertmanager",
                attributes={"alertname": "HighLatency", "status": "resolved"},
            )
        )
    )
    _accepted_by_ingest(alert)
    assert alert.incident.alert_name == "HighLatency"
    assert alert.incident.status == event_pb2.ALERT_STATUS_RESOLVED
    assert alert.incident.ends_at == alert.occurred_at


def test_an_alert_on_a_kubernetes_workload_is_still_an_alert() -> None:
    """ITBench's alerts name Kubernetes workloads: their labels make them alerts,
    firing from when they occur; a metric anomaly's labels do not."""
    alert = to_event(
        _item(
            event(
                1,
                0,
                "service/otel-demo/cart",
                source="alertmanager",
                attributes={"alertname": "HighRequestErrorRate", "service": "cart"},
            )
        )
    )
    _accepted_by_ingest(alert)
    assert alert.domain == event_pb2.DOMAIN_KUBERNETES
    assert alert.incident.alert_name == "HighRequestErrorRate"
    assert alert.incident.status == event_pb2.ALERT_STATUS_UNSPECIFIED
    assert alert.incident.starts_at == alert.occurred_at
    anomaly = to_event(
        _item(event(2, 0, "pod//frontend-0", source="trace", attributes={"status": "500"}))
    )
    assert anomaly.WhichOneof("details") is None


def test_unknown_domain_and_bad_time_are_refused() -> None:
    with pytest.raises(ValueError, match="domain"):
        to_event(_item(event(1, 0, "pod//a", domain="weather")))
    record = event(1, 0, "pod//a") | {"time": "yesterday"}
    with pytest.raises(ValueError, match="time"):
        to_event(_item(record))


def test_every_edge_type_becomes_a_dependency_from_to(tmp_path: Path) -> None:
    edges = [
        ("service//orders", "pod//orders-1", "owns"),
        ("pod//front-end-0", "pod//orders-1", "calls"),
        ("pod//orders-1", "node//n1", "runs_on"),
        ("pod/shop/flagd", "configmap/shop/flagd-config", "depends_on"),
        ("pod//a", "pod//b", "mirrors"),  # not a type of the format
    ]
    nodes = {n for a, b, _ in edges for n in (a, b)} - {"node//n1"}
    write_scenario(tmp_path, [event(1, 0, "pod//a")], sorted(nodes), edges)
    declared = dependencies(load_scenario(tmp_path).topology)
    pairs = [
        (
            f"{getattr(d, 'from').kind}/{getattr(d, 'from').namespace}/{getattr(d, 'from').name}",
            f"{d.to.kind}/{d.to.namespace}/{d.to.name}",
            d.description,
        )
        for d in declared
    ]
    # node//n1 is not a node of the file: its id still names it.
    assert pairs == edges[:4]
    assert all(getattr(d, "from").cluster == d.to.cluster == "" for d in declared)


def _member(event_id: str, resource: str) -> correlation_pb2.GroupMember:
    kind, namespace, name = resource.split("/", 2)
    return correlation_pb2.GroupMember(
        event_id=event_id,
        resource=event_pb2.ResourceRef(kind=kind, namespace=namespace, name=name),
    )


def test_collect_ranks_candidates_by_score_once_per_resource(tmp_path: Path) -> None:
    ref = event_pb2.ResourceRef
    analysed = correlation_pb2.Group(
        group_id="g1",
        members=[_member("e1", "pod/shop/api-1"), _member("e2", "deployment/shop/db")],
        root_cause_candidates=[
            correlation_pb2.RootCauseCandidate(
                event_id="e1", resource=ref(kind="pod", namespace="shop", name="api-1"), score=0.4
            ),
            # No resource: the member event's resource stands in.
            correlation_pb2.RootCauseCandidate(event_id="e2", score=0.9),
            correlation_pb2.RootCauseCandidate(
                resource=ref(kind="deployment", namespace="shop", name="db"), score=0.5
            ),
        ],
        pattern=correlation_pb2.PatternMatch(pattern="cascading_failure"),
    )
    plain = correlation_pb2.Group(group_id="g2", members=[_member("e3", "pod//x")])
    stranger = correlation_pb2.Group(group_id="g3", members=[_member("other", "pod//y")])
    answer = collect(["e1", "e2", "e3", "e4"], [analysed, plain, stranger])
    assert answer.assignments == {"e1": "g1", "e2": "g1", "e3": "g2", "e4": None}
    assert answer.groups["g1"].root_cause_candidates == ("deployment/shop/db", "pod/shop/api-1")
    assert answer.groups["g1"].pattern == "cascading_failure"
    assert answer.groups["g2"].root_cause_candidates == ()
    assert answer.groups["g2"].pattern is None

    write_answer(answer, tmp_path)
    lines = (tmp_path / "assignments.jsonl").read_text().splitlines()
    assert lines[3] == '{"event_id": "e4", "group_id": null}'
    back = read_answer(tmp_path)
    assert back.assignments == answer.assignments
    assert back.groups == answer.groups


def test_find_scenarios_nested_and_at_the_root(tmp_path: Path) -> None:
    for where in ("solo", "pack/scenario_2", "pack/scenario_10"):
        write_scenario(tmp_path / where, [event(1, 0, "pod//a")])
    (tmp_path / "notes").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in find_scenarios(tmp_path)] == [
        "pack/scenario_10",
        "pack/scenario_2",
        "solo",
    ]
    assert find_scenarios(tmp_path / "solo") == [tmp_path / "solo"]


def _scores(**values: float | None) -> Scores:
    base = {name: 0 for name in Scores.__dataclass_fields__}
    return Scores(**(base | values))  # type: ignore[arg-type]


def test_a_set_of_single_scenarios_is_one_row_of_means() -> None:
    outcomes = [
        Outcome(
            "pack/s1",
            10,
            2,
            2.0,
            _scores(
                pairwise_f1=1.0,
                pairwise_precision=None,
                alerts_in=10,
                groups_out=2,
                rc_top1_service=1.0,
            ),
        ),
        Outcome(
            "pack/s2",
            30,
            5,
            1.0,
            _scores(
                pairwise_f1=0.5,
                pairwise_precision=0.25,
                alerts_in=30,
                groups_out=5,
                rc_top1_service=0.0,
            ),
        ),
        Outcome("solo", 100, 7, 4.0, _scores(pairwise_f1=0.75, alerts_in=100, groups_out=7)),
    ]
    pack, solo = rows(outcomes)
    assert (pack.name, pack.scenarios, solo.name, solo.scenarios) == ("pack", 2, "solo", 1)
    assert pack.metrics["pairwise_f1"] == pytest.approx(0.75)
    # An undefined precision is left out of the mean, not counted as zero.
    assert pack.metrics["pairwise_precision"] == pytest.approx(0.25)
    assert pack.metrics["rc_top1_service"] == pytest.approx(0.5)
    assert (pack.metrics["alerts_in"], pack.metrics["groups_out"]) == (40, 7)
    assert pack.replay_seconds == 3.0 and pack.events_per_second == pytest.approx(40 / 3)
    text = markdown([pack, solo])
    assert "| pack (mean of 2) |" in text and "| solo |" in text
    assert "(40 -> 7)" in text
