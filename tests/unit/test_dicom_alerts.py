"""Alerts on DICOM processing: stuck correlations and error rates, alone and in the engine."""

from __future__ import annotations

from google.protobuf import duration_pb2

from corrmesh.correlation.config import apply_update, default_config
from corrmesh.correlation.dicom.alerts import ErrorRates, StuckWatch
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import Feeder
from tests.support.dicom_steps import (
    FORWARDED,
    RECEIVED,
    STORED,
    association,
    identifiers,
    instance,
    step,
)

S = 1_000_000
OK = event_pb2.PROCESSING_OUTCOME_SUCCEEDED
FAILED = event_pb2.PROCESSING_OUTCOME_FAILED
ALERT = correlation_pb2.GROUP_UPDATE_TYPE_ALERT


def watch(stuck_seconds: int = 60, complete_at: int = STORED) -> StuckWatch:
    tracker = StuckWatch()
    tracker.configure(stuck_seconds * S, complete_at)
    return tracker


def test_received_but_never_stored_is_stuck_once() -> None:
    tracker = watch()
    tracker.record("a", "association a", "g", RECEIVED, OK, 10 * S)
    tracker.record("a", "association a", "g", RECEIVED, OK, 11 * S)
    tracker.record("a", "association a", "g", STORED, OK, 12 * S)
    assert tracker.due(70 * S) == []  # 58 s after the newest step
    (alert,) = tracker.due(72 * S)
    assert alert.group_id == "g"
    assert alert.text == (
        "Stuck: association a: 1 instance(s) received but not stored; no step for 1m"
    )
    assert tracker.due(10_000 * S) == []
    assert "a" not in tracker.entries and "a" in tracker.removed


def test_progress_moves_the_deadline_and_completion_ends_the_watch() -> None:
    tracker = watch()
    tracker.record("a", "a", "g", RECEIVED, OK, 0)
    tracker.record("a", "a", "g", RECEIVED, OK, 50 * S)
    assert tracker.due(100 * S) == []
    tracker.record("a", "a", "g", STORED, OK, 101 * S)
    tracker.record("a", "a", "g", STORED, FAILED, 102 * S)
    assert "a" not in tracker.entries
    assert tracker.due(1000 * S) == []


def test_a_stall_after_progress_alerts_again() -> None:
    tracker = watch()
    tracker.record("a", "a", "g", RECEIVED, OK, 0)
    assert len(tracker.due(61 * S)) == 1
    tracker.record("a", "a", "g", RECEIVED, OK, 100 * S)
    assert len(tracker.due(161 * S)) == 1


def test_forwarded_completion_waits_for_the_forward() -> None:
    tracker = watch(complete_at=FORWARDED)
    tracker.record("a", "a", "g", RECEIVED, OK, 0)
    tracker.record("a", "a", "g", STORED, OK, S)
    (alert,) = tracker.due(62 * S)
    assert "not forwarded" in alert.text
    # A storage failure is the end of that instance: nothing to forward.
    tracker.record("b", "b", "g", RECEIVED, OK, 0)
    tracker.record("b", "b", "g", STORED, FAILED, S)
    assert "b" not in tracker.entries


def test_refused_and_out_of_order_steps_never_alert() -> None:
    tracker = watch()
    tracker.record("a", "a", "g", RECEIVED, FAILED, 0)  # refused: never started
    assert tracker.entries == {}
    tracker.record("b", "b", "g", STORED, OK, 0)  # published before its RECEIVED
    tracker.record("b", "b", "g", STORED, OK, S)
    tracker.record("b", "b", "g", RECEIVED, OK, 2 * S)
    assert tracker.due(1000 * S) == []


def test_stuck_state_survives_a_dump_and_load() -> None:
    tracker = watch()
    tracker.record("a", "a", "g", RECEIVED, OK, 5 * S)
    restored = StuckWatch()
    restored.load("a", tracker.dump("a"))
    restored.configure(60 * S, STORED)
    assert [a.group_id for a in restored.due(66 * S)] == ["g"]


def rates(threshold: float = 0.5, min_count: int = 3, window_seconds: int = 60) -> ErrorRates:
    tracker = ErrorRates()
    tracker.configure(threshold, min_count, window_seconds * S)
    return tracker


def test_error_rate_alerts_once_per_group_per_crossing() -> None:
    tracker = rates()
    told: list[tuple[list[str], str]] = []

    def record(failed: bool, at: int, groups: list[str]) -> None:
        alert = tracker.record("CT1", STORED, failed, at * S, at * S, groups)
        if alert is not None:
            told.append((sorted(alert.group_ids), alert.text))

    record(False, 0, ["g1"])
    record(True, 1, ["g1", "b1"])
    record(True, 2, ["g1", "b1"])
    assert told == []  # 2 failures: under the minimum of 3
    record(True, 3, ["g2", "b1"])
    assert told == [
        (
            ["b1", "g1", "g2"],
            "STORED failures from CT1: 3 of 4 step(s) (75%) in the last 1m, at or over 50%",
        )
    ]
    record(True, 4, ["g2", "b1"])
    record(True, 5, ["g1"])
    assert len(told) == 1  # still over: no news for groups already told
    record(True, 6, ["g3"])
    assert [groups for groups, _ in told] == [["b1", "g1", "g2"], ["g3"]]
    # Successes bring it under (7 failures of 17): it re-arms.
    for at in range(7, 17):
        record(False, at, ["g4"])
    record(True, 17, ["g1"])
    assert len(told) == 2
    # An hour later the window holds only the new failures: a fresh crossing.
    for at in range(3600, 3603):
        record(True, at, ["g1"])
    assert told[-1][0] == ["g1"] and len(told) == 3


def test_error_rates_are_per_ae_and_stage() -> None:
    tracker = rates(min_count=2)
    assert tracker.record("CT1", STORED, True, S, S, ["g"]) is None
    assert tracker.record("CT2", STORED, True, 2 * S, 2 * S, ["g"]) is None
    assert tracker.record("CT1", FORWARDED, True, 3 * S, 3 * S, ["g"]) is None
    assert tracker.record("CT1", STORED, True, 4 * S, 4 * S, ["g"]) is not None


def test_error_rate_state_survives_a_dump_and_load_but_not_a_new_window() -> None:
    tracker = rates(min_count=2)
    tracker.record("CT1", STORED, True, S, S, ["g"])
    key = ErrorRates.key_of("CT1", STORED)
    payload = tracker.dump(key)
    same = rates(min_count=2)
    same.load(key, payload)
    assert same.record("CT1", STORED, True, 2 * S, 2 * S, ["g"]) is not None
    wider = rates(min_count=2, window_seconds=600)
    wider.load(key, payload)
    assert key in wider.removed
    assert wider.record("CT1", STORED, True, 2 * S, 2 * S, ["g"]) is None


def engine_with(**alerts: object) -> Feeder:
    config = default_config()
    config.allowed_lateness.CopyFrom(duration_pb2.Duration())
    for name, value in alerts.items():
        if isinstance(value, duration_pb2.Duration):
            getattr(config.dicom_alerts, name).CopyFrom(value)
        else:
            setattr(config.dicom_alerts, name, value)
    return Feeder(CorrelationEngine(config))


def test_the_engine_alerts_on_the_groups_of_a_stuck_association_and_batch() -> None:
    feeder = engine_with(stuck_after=duration_pb2.Duration(seconds=120))
    sender = association("MODALITY1")
    updates = []
    for built in [
        *instance(sender, identifiers(number=1), 0),
        step(sender, identifiers(number=2), RECEIVED, 1),
        step(sender, identifiers(number=3), RECEIVED, 2),
    ]:
        updates += feeder.feed(built)
    association_group = next(
        u.group.group_id for u in updates if u.group.type == correlation_pb2.GROUP_TYPE_ASSOCIATION
    )
    batch_group = next(
        u.group.group_id for u in updates if u.group.type == correlation_pb2.GROUP_TYPE_BATCH
    )
    # Event time moves on with another sender's work; the watermark finds the stall.
    other = association("MODALITY9")
    alerts = []
    for at in (100, 200, 300):
        alerts += [
            u
            for u in feeder.feed(step(other, identifiers(patient="P-9", number=at), STORED, at))
            if u.type == ALERT
        ]
    assert {u.group.group_id: u.alert for u in alerts} == {
        association_group: (
            f"Stuck: association {sender.association_id[:8]} from MODALITY1: 2 "
            "instance(s) received but not stored; no step for 2m"
        ),
        batch_group: (
            "Stuck: exam accession ACC-1: 2 instance(s) received but not stored; no step for 2m"
        ),
    }
    group = feeder.engine.find_group(batch_group)
    assert group is not None and group.metadata["last_alert"] == alerts[-1].alert


def test_the_engine_alerts_on_an_error_rate_once_per_crossing() -> None:
    feeder = engine_with(error_min_count=3, error_rate_threshold=0.5)
    alerts: list[tuple[int, correlation_pb2.GroupUpdate]] = []
    failures: list[str] = []
    for number in range(8):
        sender = association("MODALITY2")
        ids = identifiers(patient=f"P-{number}", accession=f"A-{number}", number=number)
        for built in instance(sender, ids, number * 5, error="[Errno 28] No space left"):
            if built.dicom.outcome == FAILED:
                failures.append(built.event_id)
            alerts += [(len(failures), u) for u in feeder.feed(built) if u.type == ALERT]
    told = [u.group.group_id for _, u in alerts]
    # Each group holding a failure is told once, from the third failure (the crossing) on.
    window = feeder.engine.window.events
    memberships = {window[e].group_id for e in failures}
    batches = {g for g in told if g.startswith("dicom-batch-")}
    assert len(told) == len(set(told))
    assert set(told) == memberships | batches and len(batches) == 8
    assert alerts[0][0] == 3
    assert all(u.alert.startswith("STORED failures from MODALITY2: ") for _, u in alerts)
    assert alerts[0][1].alert.endswith("3 of 3 step(s) (100%) in the last 5m, at or over 50%")


def test_a_whole_configuration_without_dicom_alerts_keeps_their_defaults() -> None:
    older = default_config()
    older.ClearField("dicom_alerts")
    violations = FieldViolations()
    updated = apply_update(
        default_config(), correlation_pb2.UpdateConfigRequest(config=older), violations
    )
    assert not violations
    assert updated.dicom_alerts == default_config().dicom_alerts
    assert updated.dicom_alerts.stuck_after.seconds == 600
