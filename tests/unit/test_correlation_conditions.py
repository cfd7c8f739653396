"""Open conditions: a Pod left Pending keeps its group open to it, beyond the window."""

from __future__ import annotations

from corrmesh.correlation.conditions import CONDITION, HORIZON_US
from corrmesh.v1 import event_pb2
from tests.support.correlation_events import Feeder, event, pending_pod_events, pod_event


def group_of(feeder: Feeder, event_id: str) -> str | None:
    """The group of ``event_id``: a loaded group's member, else as the window has it."""
    for group in feeder.engine.groups.values():
        if event_id in group.members:
            return group.group_id
    return feeder.engine.window.events[event_id].group_id


def test_a_pending_pods_repeats_and_deletion_join_its_group_however_late() -> None:
    feeder = Feeder()
    for built in pending_pod_events():
        feeder.feed(built)
    engine = feeder.engine
    group_id = group_of(feeder, "x1-pending")
    assert group_id is not None and group_of(feeder, "x2-pending") == group_id
    # Half an hour later the scheduler still fails; the window (300 s) holds
    # nothing of the group, yet it is still in memory and takes the repeats.
    assert group_of(feeder, "x1-again") == group_of(feeder, "x2-again") == group_id
    # The scale-down deletes the Pods: that ends their condition, in the group.
    assert group_of(feeder, "x1-killed") == group_of(feeder, "x2-killed") == group_id
    group = engine.groups[group_id]
    assert {"x1-pending", "x1-again", "x1-killed"} <= set(group.members)
    reasons = [e.reason for e in group.edges if e.strategy == CONDITION]
    assert reasons
    assert "Pod shop/email-x1 has had FailedScheduling since 30 min before" in reasons[0]
    assert not engine.holds_condition(group_id)


def test_without_the_condition_the_repeat_would_be_alone() -> None:
    feeder = Feeder()
    events = pending_pod_events()
    for built in events[:2]:
        feeder.feed(built)
    group_id = group_of(feeder, "x1-pending")
    assert group_id is not None
    # The same repeat on a Pod that never was Pending in the group stays alone.
    feeder.feed(pod_event(1800, "email-x9", "FailedScheduling", count=8, event_id="x9-again"))
    assert group_of(feeder, "x9-again") is None


def test_a_group_holding_a_condition_stays_loaded_and_settles_when_it_ends() -> None:
    feeder = Feeder()
    events = pending_pod_events()
    for built in events[:2]:
        feeder.feed(built)
    group_id = str(group_of(feeder, "x1-pending"))
    # Something unrelated moves event time on past the window.
    feeder.feed(pod_event(1000, "other-1", "Pulled", event_id="unrelated"))
    engine = feeder.engine
    assert group_id in engine.groups and engine.groups[group_id].in_window == 0
    assert engine.holds_condition(group_id)
    feeder.feed(pod_event(1100, "email-x1", "Killing", event_id="x1-gone"))
    feeder.feed(pod_event(1101, "email-x2", "Killing", event_id="x2-gone"))
    assert not engine.holds_condition(group_id)
    feeder.feed(pod_event(1800, "other-2", "Pulled", event_id="later"))
    assert group_id not in engine.groups and group_id in engine.headers


def test_a_condition_nothing_is_heard_of_for_the_horizon_ends() -> None:
    feeder = Feeder()
    for built in pending_pod_events()[:2]:
        feeder.feed(built)
    group_id = str(group_of(feeder, "x1-pending"))
    late = HORIZON_US / 1e6 + 120
    feeder.feed(pod_event(late, "email-x1", "FailedScheduling", count=30, event_id="x1-late"))
    assert group_of(feeder, "x1-late") != group_id
    assert not feeder.engine.holds_condition(group_id)


def test_only_kubernetes_objects_have_conditions() -> None:
    feeder = Feeder()
    for built in pending_pod_events()[:2]:
        built.domain = event_pb2.DOMAIN_GENERIC
        feeder.feed(built)
    group_id = group_of(feeder, "x1-pending")
    assert group_id is not None
    assert not feeder.engine.holds_condition(group_id)


def test_a_merged_groups_conditions_go_with_it() -> None:
    feeder = Feeder()
    pending = pending_pod_events()
    for built in pending[:2]:
        feeder.feed(built)
    for number, at in enumerate((2, 3, 4), start=1):
        feeder.feed(pod_event(at, f"cart-y{number}", "BackOff", event_id=f"y{number}"))
    pending_group, larger = group_of(feeder, "x1-pending"), group_of(feeder, "y1")
    assert None not in (pending_group, larger) and pending_group != larger
    # One event that matches both: the Pending Pod's fingerprint, the crash loop's words.
    bridge = pod_event(5, "cart-y1", "BackOff", event_id="bridge")
    bridge.fingerprint = pending[0].fingerprint
    feeder.feed(bridge)
    assert group_of(feeder, "x1-pending") == larger, "merged into the larger group"
    feeder.feed(pending[2])
    assert group_of(feeder, "x1-again") == larger


def test_a_node_down_keeps_its_group_until_it_is_ready_again() -> None:
    feeder = Feeder()
    node = event_pb2.ResourceRef(cluster="prod-eu", kind="Node", name="node-1")
    down = [
        event(0, event_id="down", resource=node, type="NodeNotReady", fingerprint="n1/down"),
        event(1, event_id="down-2", resource=node, type="NodeNotReady", fingerprint="n1/down"),
    ]
    for built in down:
        built.source = "kubernetes"
        feeder.feed(built)
    group_id = group_of(feeder, "down")
    assert group_id is not None and feeder.engine.holds_condition(group_id)
    back = event(1500, event_id="ready", resource=node, type="NodeReady", source="kubernetes")
    feeder.feed(back)
    assert group_of(feeder, "ready") == group_id
    assert not feeder.engine.holds_condition(group_id)
