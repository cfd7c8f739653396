"""The engine on event time: create, join, merge, window, lateness, indexes."""

from __future__ import annotations

from google.protobuf import duration_pb2

from corrmesh.correlation.config import default_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.v1 import correlation_pb2, event_pb2, topology_pb2
from tests.support.correlation_events import Feeder, deployment, event, pod

U = correlation_pb2.GroupUpdateType


def member_ids(update: correlation_pb2.GroupUpdate) -> set[str]:
    return {m.event_id for m in update.group.members}


def test_a_lone_event_makes_no_group() -> None:
    feeder = Feeder()
    assert feeder.feed(event(0, fingerprint="f-1")) == []
    assert feeder.engine.groups == {}
    assert len(feeder.engine.window) == 1


def test_second_match_creates_then_third_joins() -> None:
    feeder = Feeder()
    checkout = deployment("checkout")
    feeder.feed(event(0, event_id="a", resource=checkout, title="Replicas unavailable"))
    created = feeder.feed(
        event(3, event_id="b", resource=checkout, severity=event_pb2.SEVERITY_CRITICAL)
    )
    assert [u.type for u in created] == [U.GROUP_UPDATE_TYPE_CREATED]
    group = created[0].group
    assert group.status == correlation_pb2.GROUP_STATUS_ACTIVE
    assert group.primary_event_id == "a"
    assert group.title == "Replicas unavailable on Deployment shop/checkout"
    assert group.severity == event_pb2.SEVERITY_CRITICAL
    assert group.member_count == 2
    assert [(e.from_event_id, e.to_event_id) for e in group.edges] == [("a", "b")]
    assert group.edges[0].reason == "same resource Deployment shop/checkout, 3 s apart"
    assert created[0].event_ids == ["b"]
    assert group.revision == 1

    added = feeder.feed(event(10, event_id="c", resource=checkout))
    assert [u.type for u in added] == [U.GROUP_UPDATE_TYPE_MEMBER_ADDED]
    assert added[0].group.group_id == group.group_id
    # A MEMBER_ADDED update carries what it added; the group has all three.
    assert member_ids(added[0]) == {"c"}
    assert added[0].group.member_count == 3
    assert added[0].group.revision == 2
    (member,) = added[0].group.members
    assert set(member.correlated_event_ids) == {"a", "b"}
    state = feeder.engine.groups[group.group_id]
    assert set(state.neighbours["a"]) == {"b", "c"}
    assert added[0].sequence == created[0].sequence + 1


def test_window_is_measured_on_event_time() -> None:
    feeder = Feeder()
    feeder.feed(event(0, event_id="old", fingerprint="f"))
    # Processed a moment later on the wall clock, but 301 s later in event time.
    assert feeder.feed(event(301, event_id="new", fingerprint="f")) == []
    # 300 s later in event time still joins.
    feeder2 = Feeder()
    feeder2.feed(event(0, event_id="x", fingerprint="g"))
    assert len(feeder2.feed(event(300, event_id="y", fingerprint="g"))) == 1


def test_the_watermark_evicts_old_events_and_groups() -> None:
    feeder = Feeder()
    engine = feeder.engine
    feeder.feed(event(0, fingerprint="f"))
    feeder.feed(event(1, fingerprint="f"))
    assert len(engine.groups) == 1
    # Newest 1000 s, lateness 60 s, window 300 s: everything before 640 s leaves.
    feeder.feed(event(1000, fingerprint="other"))
    assert engine.watermark_us is not None
    assert engine.horizon_us == engine.watermark_us - 300_000_000
    assert len(engine.window) == 1
    assert engine.groups == {}
    assert engine.window.by_fingerprint("f", 10) == []


def test_out_of_order_event_within_lateness_is_placed() -> None:
    feeder = Feeder()
    feeder.feed(event(100, event_id="late-peer", fingerprint="f"))
    feeder.feed(event(150, event_id="newest"))
    # 60 s lateness: newest is 150, so 95 is behind the newest but inside lateness.
    updates = feeder.feed(event(95, event_id="ooo", fingerprint="f"))
    assert [u.type for u in updates] == [U.GROUP_UPDATE_TYPE_CREATED]
    assert member_ids(updates[0]) == {"late-peer", "ooo"}
    assert updates[0].group.primary_event_id == "ooo"


def test_event_behind_the_watermark_is_late_and_not_placed() -> None:
    feeder = Feeder()
    feeder.feed(event(100, fingerprint="f"))
    feeder.feed(event(200))
    assert feeder.feed(event(139, fingerprint="f")) == []
    assert feeder.engine.late_events == 1
    assert feeder.engine.events_in == 3


def test_event_matching_two_groups_merges_into_the_larger() -> None:
    feeder = Feeder()
    for i, name in enumerate(("a1", "a2", "a3")):
        feeder.feed(event(i, event_id=name, fingerprint="fa"))
    feeder.feed(event(3, event_id="b1", resource=pod("db-0")))
    small = feeder.feed(event(4, event_id="b2", resource=pod("db-0")))[0].group.group_id
    large_id = next(iter(feeder.engine.groups.keys() - {small}))
    bridge = event(5, event_id="x", fingerprint="fa", resource=pod("db-0"), sequence=99)
    engine = feeder.engine
    merged = engine.apply(engine.prepare(bridge), lambda _a, _b: None)
    assert [u.type for u in merged] == [U.GROUP_UPDATE_TYPE_MERGED]
    assert merged[0].group.group_id == large_id
    assert list(merged[0].other_group_ids) == [small]
    assert member_ids(merged[0]) == {"a1", "a2", "a3", "b1", "b2", "x"}
    assert set(feeder.engine.groups) == {large_id}
    changes = feeder.engine.take_changes()
    # Both groups were committed before: the store moves the small one's rows.
    assert changes.absorbed == {small: large_id}
    assert changes.new_groups == []


def test_without_auto_merge_the_event_joins_the_larger_group_only() -> None:
    config = default_config()
    config.auto_merge_groups = False
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, fingerprint="fa"))
    feeder.feed(event(1, fingerprint="fa"))
    feeder.feed(event(2, fingerprint="fa"))
    feeder.feed(event(3, resource=pod("db-0")))
    feeder.feed(event(4, resource=pod("db-0")))
    updates = feeder.feed(event(5, fingerprint="fa", resource=pod("db-0")))
    assert [u.type for u in updates] == [U.GROUP_UPDATE_TYPE_MEMBER_ADDED]
    assert updates[0].group.member_count == 4
    assert len(feeder.engine.groups) == 2


def test_max_group_size_is_respected() -> None:
    config = default_config()
    config.max_group_size = 3
    feeder = Feeder(CorrelationEngine(config))
    for i in range(6):
        feeder.feed(event(i, fingerprint="f"))
    sizes = sorted(len(g.members) for g in feeder.engine.groups.values())
    assert sizes == [3, 3]


def test_candidates_come_from_indexes_not_a_scan() -> None:
    feeder = Feeder()
    for i in range(500):
        feeder.feed(event(i * 0.1, fingerprint=f"noise-{i}"))
    for i in range(3):
        feeder.feed(event(60 + i, fingerprint="needle"))
    plan = feeder.engine.prepare(event(70, fingerprint="needle"))
    assert len(feeder.engine.window) == 503
    assert len(plan.candidates) == 3
    assert plan.pairs == {}


def test_topology_pairs_are_listed_and_used() -> None:
    feeder = Feeder()
    feeder.feed(event(0, event_id="deploy", resource=deployment("checkout")))
    feeder.feed(event(1, event_id="elsewhere", resource=pod("x", cluster="other")))
    plan = feeder.engine.prepare(event(2, event_id="pod", resource=pod("checkout-1")))
    assert len(plan.pairs) == 1  # the other cluster is not asked about
    (refs,) = plan.pairs.values()
    assert {refs[0].name, refs[1].name} == {"checkout", "checkout-1"}
    updates = feeder.engine.apply(plan, lambda a, b: (topology_pb2.RELATION_KIND_OWNER, 2))
    assert updates[0].group.edges[0].reason == (
        "Pod shop/checkout-1 is owned by Deployment shop/checkout, 2 s apart"
    )


def _tuned(**changes: object) -> correlation_pb2.CorrelationConfig:
    """The default config with ``changes`` applied to the fingerprint and combined entries."""
    config = default_config()
    for entry in config.strategies:
        if entry.name in ("fingerprint", "combined") and not entry.domain:
            for name, value in changes.items():
                setattr(entry, name, value)
    return config


def test_disabled_strategies_correlate_nothing() -> None:
    feeder = Feeder(CorrelationEngine(_tuned(enabled=False)))
    feeder.feed(event(0, fingerprint="f"))
    assert feeder.feed(event(1, fingerprint="f")) == []


def test_weight_below_min_score_drops_the_match() -> None:
    feeder = Feeder(CorrelationEngine(_tuned(weight=0.4)))
    feeder.feed(event(0, fingerprint="f"))
    assert feeder.feed(event(1, fingerprint="f")) == []


def test_threshold_above_the_score_drops_the_match() -> None:
    feeder = Feeder(CorrelationEngine(_tuned(threshold=1.0)))
    feeder.feed(event(0, fingerprint="f"))
    # fingerprint scores exactly 1.0 (passes), combined stays below 1.0 here.
    (update,) = feeder.feed(event(1, fingerprint="f"))
    assert update.group.edges[0].strategy == "fingerprint"


def test_a_shorter_window_applies_to_later_events() -> None:
    feeder = Feeder()
    feeder.feed(event(0, fingerprint="f"))
    config = default_config()
    config.temporal_window.CopyFrom(duration_pb2.Duration(seconds=10))
    feeder.engine.set_config(config)
    assert feeder.feed(event(20, fingerprint="f")) == []
