"""The engine scenarios of incident-correlation-engine.md's testing strategy.

Numbers refer to its list of 25 integration scenarios; those about RPCs
(manual correlation, resolve, lookups, statistics, restart, configuration,
concurrency) run over gRPC in tests/integration/test_correlation_edits.py and
test_correlation_concurrency.py; the benchmark (24) is ``make bench``.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import duration_pb2

from corrmesh.correlation import strategies as strategies_module
from corrmesh.correlation.config import default_config, validate_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.strategies import (
    TOKENS,
    Match,
    Strategy,
    StrategyContext,
    register,
    strategy_names,
)
from corrmesh.correlation.strategies.signals import temporal_score
from corrmesh.correlation.window import EventInfo
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import Feeder, deployment, event, pod

U = correlation_pb2.GroupUpdateType
S = correlation_pb2.GroupStatus


def only(config: correlation_pb2.CorrelationConfig, *names: str) -> None:
    """Enables exactly ``names`` for every domain."""
    for entry in config.strategies:
        entry.enabled = entry.name in names


def edge_of(updates: list[correlation_pb2.GroupUpdate]) -> correlation_pb2.CorrelationEdge:
    (update,) = [u for u in updates if u.group.edges]
    return update.group.edges[-1]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, 1.0), (30, 0.74), (60, 0.55), (120, 0.30), (180, 0.17), (300, 0.05)],
)
def test_1_temporal_decay_follows_the_reference_table(seconds: int, expected: float) -> None:
    assert temporal_score(0, seconds * 1_000_000, 300_000_000) == pytest.approx(expected, abs=0.005)
    assert temporal_score(0, 301_000_000, 300_000_000) == 0.0


def test_1_temporal_strategy_when_enabled_alone() -> None:
    config = default_config()
    only(config, "temporal")
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, event_id="a", source="same", title="alpha"))
    updates = feeder.feed(event(30, event_id="b", source="same", title="beta"))
    edge = edge_of(updates)
    assert edge.strategy == "temporal"
    assert edge.score == pytest.approx(0.74, abs=0.01)
    assert edge.reason == "30 s apart"
    # 120 s apart scores 0.30, under the minimum score 0.5.
    assert feeder.feed(event(150, source="same", title="gamma")) == []


def test_2_pattern_similar_texts_correlate() -> None:
    config = default_config()
    only(config, "pattern")
    feeder = Feeder(CorrelationEngine(config))
    common: dict[str, Any] = {"severity": event_pb2.SEVERITY_ERROR, "type": "DiskPressure"}
    feeder.feed(
        event(
            0,
            event_id="a",
            title="Disk usage above 90% on node worker-1",
            description="root filesystem nearly full",
            **common,
        )
    )
    updates = feeder.feed(
        event(
            40,
            event_id="b",
            title="Disk usage above 90% on node worker-2",
            description="root filesystem nearly full",
            **common,
        )
    )
    edge = edge_of(updates)
    assert edge.strategy == "pattern"
    # title 6/8 tokens (0.75·0.6) + description 1.0·0.3 + severity 0.1 + type 0.1, capped.
    assert edge.score == pytest.approx(0.95)
    assert edge.reason == "titles 75% similar, 40 s apart"


def test_2_short_titles_use_edit_distance() -> None:
    config = default_config()
    only(config, "pattern")
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, title="Disk full", type="disk"))
    # Jaccard says 1/3; Levenshtein similarity of the short strings says 8/9.
    updates = feeder.feed(event(1, title="Disk ful", type="disk"))
    assert edge_of(updates).reason.startswith("titles 89% similar")


def test_3_source_strategy_when_enabled_alone() -> None:
    config = default_config()
    only(config, "source")
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, source="prometheus/eu"))
    edge = edge_of(feeder.feed(event(200, source="prometheus/eu")))
    assert (edge.strategy, edge.score) == ("source", 1.0)
    assert edge.reason == "same source prometheus/eu, 200 s apart"
    assert feeder.feed(event(200, source="prometheus/us")) == []


def test_4_fingerprint_exact_match_scores_one() -> None:
    feeder = Feeder()
    feeder.feed(event(0, fingerprint="alertname=HighLatency,service=api"))
    edge = edge_of(feeder.feed(event(250, fingerprint="alertname=HighLatency,service=api")))
    assert (edge.strategy, edge.score) == ("fingerprint", 1.0)
    assert feeder.feed(event(251, fingerprint="alertname=HighLatency,service=web")) == []


def test_5_combined_needs_more_than_time_and_source() -> None:
    feeder = Feeder()
    feeder.feed(event(0, source="grafana", title="Replication lag on orders-db"))
    # The same source 12 s later scores (0.3·0.89 + 0.2)·1.2 = 0.56: under combined's 0.65.
    assert feeder.feed(event(12, source="grafana", title="Certificate expires soon")) == []
    feeder.feed(
        event(100, source="grafana", title="Checkout API latency above SLO", type="Latency")
    )
    updates = feeder.feed(
        event(112, source="grafana", title="Checkout API latency above SLO again", type="Latency")
    )
    edge = edge_of(updates)
    assert edge.strategy == "combined"
    # Pattern: 0.6·5/6 + 0.1 (severity) + 0.1 (type) = 0.7, a signal; boosted for 3 signals.
    temporal = temporal_score(0, 12_000_000, 300_000_000)
    assert edge.score == pytest.approx((0.3 * temporal + 0.3 * 0.7 + 0.2) * 1.2)
    assert edge.reason == "same source grafana, 12 s apart, titles 83% similar"


def test_6_and_7_create_then_join() -> None:
    feeder = Feeder()
    checkout = deployment("checkout")
    assert feeder.feed(event(0, event_id="a", resource=checkout)) == []
    (created,) = feeder.feed(event(3, event_id="b", resource=checkout))
    assert created.type == U.GROUP_UPDATE_TYPE_CREATED
    (joined,) = feeder.feed(event(9, event_id="c", resource=checkout))
    assert joined.type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert joined.group.group_id == created.group.group_id
    assert joined.group.member_count == 3


def test_8_a_bridge_merges_groups_into_the_largest() -> None:
    feeder = Feeder()
    for i in range(3):
        feeder.feed(event(i, fingerprint="big"))
    for i in range(2):
        feeder.feed(event(i, fingerprint="small"))
    big = {g.group_id for g in feeder.engine.groups.values() if g.member_count == 3}
    updates = feeder.feed(event(5, fingerprint="big", resource=pod("x")))
    assert updates[0].type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    # Now the bridge: same fingerprint as "small", same resource as the big group's new member.
    (merged,) = feeder.feed(event(6, fingerprint="small", resource=pod("x")))
    assert merged.type == U.GROUP_UPDATE_TYPE_MERGED
    assert merged.group.group_id in big
    assert merged.group.member_count == 7
    assert len(merged.other_group_ids) == 1
    assert len(feeder.engine.groups) == 1


def test_16_dissimilar_events_stay_apart() -> None:
    feeder = Feeder()
    feeder.feed(event(0, title="Certificate expires in 3 days", resource=deployment("web")))
    feeder.feed(event(1, title="Replication lag on orders-db", resource=deployment("orders-db")))
    feeder.feed(event(2, title="Camera offline", domain=event_pb2.DOMAIN_CAMERA))
    assert feeder.engine.groups == {}


def test_17_many_candidates_edges_go_to_the_best_and_are_bounded() -> None:
    feeder = Feeder()
    for i in range(20):
        feeder.feed(event(i, fingerprint="storm"))
    (update,) = feeder.feed(event(30, event_id="last", fingerprint="storm"))
    edges = update.group.edges
    assert 1 <= len(edges) <= 8
    assert all(e.to_event_id == "last" for e in edges)
    # The nearest in time come first among equal scores.
    assert edges[0].from_event_id == f"e-{int(edges[0].from_event_id.split('-')[1])}"


def test_19_min_correlation_score_is_the_bar() -> None:
    config = default_config()
    only(config, "temporal")
    config.min_correlation_score = 0.9
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, source="s"))
    assert feeder.feed(event(20, source="s")) == []  # e^(-0.2) = 0.82 < 0.9
    assert feeder.feed(event(21, source="s")) != []  # 1 s from the previous: 0.99


def test_20_disabling_per_domain_leaves_other_domains_alone() -> None:
    config = default_config()
    config.strategies.add(name="fingerprint", domain=event_pb2.DOMAIN_INCIDENT, enabled=False)
    config.strategies.add(name="combined", domain=event_pb2.DOMAIN_INCIDENT, enabled=False)
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, fingerprint="f", domain=event_pb2.DOMAIN_INCIDENT))
    assert feeder.feed(event(1, fingerprint="f", domain=event_pb2.DOMAIN_INCIDENT)) == []
    feeder.feed(event(0, fingerprint="k", domain=event_pb2.DOMAIN_KUBERNETES))
    assert feeder.feed(event(1, fingerprint="k", domain=event_pb2.DOMAIN_KUBERNETES)) != []


def test_22_a_full_group_continues_in_a_linked_group() -> None:
    config = default_config()
    config.max_group_size = 3
    feeder = Feeder(CorrelationEngine(config))
    updates = []
    for i in range(5):
        updates += feeder.feed(event(i, event_id=f"s{i}", fingerprint="storm"))
    groups = sorted(feeder.engine.groups.values(), key=lambda g: g.created_sequence)
    assert [g.member_count for g in groups] == [3, 2]
    first, second = groups
    assert second.links == [(first.group_id, correlation_pb2.RELATIONSHIP_TYPE_CONTINUATION)]
    assert first.links == [(second.group_id, correlation_pb2.RELATIONSHIP_TYPE_CONTINUATION)]
    assert sum(g.member_count for g in groups) == 5, "nothing dropped"


def test_23_memory_is_bounded_by_the_window_not_the_history() -> None:
    # Headers of quiet groups stay until archived: archive soon, so the run
    # covers many whole lifecycles.
    feeder = Feeder(CorrelationEngine(lifecycle_config(stabilize_after=60, archive_after=120)))

    def run(start: int, count: int) -> None:
        for i in range(count):
            feeder.feed(event(start + i * 0.5, fingerprint=f"f-{(start + i) // 10}"))

    tracemalloc.start()
    run(0, 4000)
    before = tracemalloc.take_snapshot()
    run(2000, 4000)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The window holds 360 s of events (window + lateness) = 720 events whatever the history.
    assert len(feeder.engine.window) <= 730
    assert len(feeder.engine.groups) <= 80
    assert len(feeder.engine.headers) <= 80
    assert grown < 500_000, f"memory grew by {grown} bytes over 4000 more events"


def test_25_the_best_strategy_names_the_edge_and_every_match_counts() -> None:
    feeder = Feeder()
    checkout = deployment("checkout")
    feeder.feed(event(0, fingerprint="f", resource=checkout, source="s"))
    edge = edge_of(feeder.feed(event(2, fingerprint="f", resource=checkout, source="s")))
    # fingerprint and topology (same resource) both score 1.0; the first enabled in
    # name order wins a tie, combined scores less.
    assert edge.strategy == "fingerprint"
    assert feeder.engine.matches == {"fingerprint": 1}


def test_one_dicom_association_is_one_association_group() -> None:
    feeder = Feeder()
    steps = []
    for index, stage in enumerate(("RECEIVED", "STORED", "RECEIVED", "STORED")):
        step = event(
            index * 0.2, event_id=f"step-{index}", domain=event_pb2.DOMAIN_DICOM, type=stage
        )
        step.correlation_id = "assoc-1"
        steps.append(step)
    other = event(0.5, event_id="elsewhere", domain=event_pb2.DOMAIN_DICOM, type="RECEIVED")
    other.correlation_id = "assoc-2"
    for step in [*steps[:2], other, *steps[2:]]:
        feeder.feed(step)
    (group,) = feeder.engine.groups.values()
    assert group.type == correlation_pb2.GROUP_TYPE_ASSOCIATION
    assert set(group.members) == {f"step-{i}" for i in range(4)}
    assert group.edges[0].reason == "same correlation id assoc-1, 0.2 s apart"


# -- lifecycle -------------------------------------------------------------------------


def lifecycle_config(**seconds: int) -> correlation_pb2.CorrelationConfig:
    config = default_config()
    for name, value in seconds.items():
        getattr(config, name).CopyFrom(duration_pb2.Duration(seconds=value))
    return config


def statuses(updates: list[correlation_pb2.GroupUpdate]) -> list[tuple[int, int]]:
    return [(u.type, u.group.status) for u in updates]


def test_building_until_enough_evidence_then_active() -> None:
    config = default_config()
    config.min_events_to_activate = 3
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, fingerprint="f"))
    assert statuses(feeder.feed(event(1, fingerprint="f"))) == [
        (U.GROUP_UPDATE_TYPE_CREATED, S.GROUP_STATUS_BUILDING)
    ]
    assert statuses(feeder.feed(event(2, fingerprint="f"))) == [
        (U.GROUP_UPDATE_TYPE_MEMBER_ADDED, S.GROUP_STATUS_ACTIVE),
        (U.GROUP_UPDATE_TYPE_STATUS_CHANGED, S.GROUP_STATUS_ACTIVE),
    ]


def test_quiet_group_stabilises_then_archives_on_event_time() -> None:
    feeder = Feeder(CorrelationEngine(lifecycle_config(stabilize_after=600, archive_after=3600)))
    feeder.feed(event(0, fingerprint="f"))
    (created,) = feeder.feed(event(1, fingerprint="f"))
    group_id = created.group.group_id
    # 660 s later (stabilize 600 s + lateness 60 s) the group is quiet.
    later = feeder.feed(event(662, fingerprint="other"))
    assert [(u.group.group_id, u.group.status) for u in later] == [
        (group_id, S.GROUP_STATUS_STABLE)
    ]
    # A new member wakes it up (a quiet group would take only repeats).
    feeder2 = Feeder(CorrelationEngine(lifecycle_config(stabilize_after=100, quiet_after=0)))
    feeder2.feed(event(0, fingerprint="g"))
    feeder2.feed(event(1, fingerprint="g"))
    feeder2.feed(event(170, event_id="bump"))
    woken = feeder2.feed(event(175, fingerprint="g"))
    assert [u.group.status for u in woken] == [S.GROUP_STATUS_ACTIVE, S.GROUP_STATUS_ACTIVE]
    # Archived 3600 s after its last event, and it leaves memory.
    gone = feeder.feed(event(3700, fingerprint="other2"))
    assert [(u.group.group_id, u.group.status) for u in gone] == [
        (group_id, S.GROUP_STATUS_ARCHIVED)
    ]
    assert group_id not in feeder.engine.groups and group_id not in feeder.engine.headers


def test_resolving_events_resolve_and_a_match_afterwards_recurs() -> None:
    feeder = Feeder()
    feeder.feed(event(0, fingerprint="oom", title="OOMKilled"))
    (created,) = feeder.feed(event(5, fingerprint="oom", title="OOMKilled"))
    resolved = event(20, fingerprint="oom", title="OOMKilled resolved")
    resolved.attributes["resolves"] = "true"
    updates = feeder.feed(resolved)
    assert statuses(updates)[-1] == (U.GROUP_UPDATE_TYPE_STATUS_CHANGED, S.GROUP_STATUS_RESOLVED)
    assert updates[-1].group.resolved_at.ToSeconds() > 0
    (again,) = feeder.feed(event(40, event_id="again", fingerprint="oom", title="OOMKilled"))
    assert again.type == U.GROUP_UPDATE_TYPE_CREATED
    assert again.group.group_id != created.group.group_id
    assert [(k.group_id, k.relationship_type) for k in again.group.links] == [
        (created.group.group_id, correlation_pb2.RELATIONSHIP_TYPE_RECURRENCE)
    ]


def test_resolving_needs_every_fingerprint_and_never_opens_a_group() -> None:
    feeder = Feeder()
    feeder.feed(event(0, fingerprint="a", resource=pod("p")))
    feeder.feed(event(1, fingerprint="b", resource=pod("p")))
    resolve_a = event(2, fingerprint="a")
    resolve_a.incident.status = event_pb2.ALERT_STATUS_RESOLVED
    (update,) = feeder.feed(resolve_a)
    assert update.group.status == S.GROUP_STATUS_ACTIVE, "b still fires"
    lonely = event(3, fingerprint="zzz")
    lonely.incident.status = event_pb2.ALERT_STATUS_RESOLVED
    assert feeder.feed(lonely) == []


def test_recurrence_after_the_old_members_left_the_window() -> None:
    feeder = Feeder()
    feeder.feed(event(0, fingerprint="oom"))
    (created,) = feeder.feed(event(1, fingerprint="oom"))
    done = event(2, fingerprint="oom")
    done.attributes["resolves"] = "true"
    feeder.feed(done)
    feeder.feed(event(2000, event_id="later"))  # the old members leave the window
    assert created.group.group_id in feeder.engine.headers
    (recurred,) = feeder.feed(event(2001, fingerprint="oom"))
    assert recurred.group.member_count == 1
    assert recurred.group.links[0].relationship_type == correlation_pb2.RELATIONSHIP_TYPE_RECURRENCE


def test_quiet_stream_moves_on_with_the_wall_clock() -> None:
    feeder = Feeder(CorrelationEngine(lifecycle_config(stabilize_after=30)))
    feeder.feed(event(0, fingerprint="f"))
    feeder.feed(event(1, fingerprint="f"))
    engine = feeder.engine
    assert engine.tick(10_000_000) == []  # the first tick only sets the clock
    updates = engine.tick(10_000_000 + 120_000_000)  # two quiet minutes later
    assert [u.group.status for u in updates] == [S.GROUP_STATUS_STABLE]


# -- plugging in a strategy ------------------------------------------------------------


class SameZoneStrategy(Strategy):
    """The README's example."""

    name = "same_zone"
    indexes = frozenset({TOKENS})

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        zone = new_event.resource.cluster
        if zone and zone == candidate.resource.cluster:
            return Match(0.6, self.name, f"both in {zone}")
        return None


@pytest.fixture
def same_zone() -> Iterator[None]:
    register(SameZoneStrategy)
    yield
    del strategies_module._REGISTRY["same_zone"]


def test_a_registered_strategy_is_configurable_and_correlates(same_zone: None) -> None:
    assert "same_zone" in strategy_names()
    config = default_config()
    only(config, "same_zone")
    violations = FieldViolations()
    validate_config(config, violations)
    assert not violations
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(event(0, title="checkout slow", resource=pod("a", cluster="eu-1")))
    edge = edge_of(
        feeder.feed(event(5, title="checkout errors", resource=pod("b", cluster="eu-1")))
    )
    assert (edge.strategy, edge.reason) == ("same_zone", "both in eu-1")
