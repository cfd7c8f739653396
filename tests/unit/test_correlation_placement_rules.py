"""Placement rules that keep overlapping incidents apart: quiet groups take only
repeats, groups merge only around one onset, and resources Topology merely
links join only when they fail together."""

from __future__ import annotations

from google.protobuf import duration_pb2

from corrmesh.correlation.config import default_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.strategies import Relation
from corrmesh.v1 import correlation_pb2, event_pb2, topology_pb2
from tests.support.correlation_events import Feeder, event, pod

U = correlation_pb2


def config_with(**seconds: int) -> correlation_pb2.CorrelationConfig:
    config = default_config()
    for name, value in seconds.items():
        getattr(config, name).CopyFrom(duration_pb2.Duration(seconds=value))
    return config


def group_of(feeder: Feeder, event_id: str) -> str | None:
    for group in feeder.engine.groups.values():
        if event_id in group.members:
            return group.group_id
    return None


def counted_again(at: float, event_id: str, fingerprint: str, count: int) -> event_pb2.Event:
    """A Kubernetes Event the cluster has counted ``count`` times."""
    built = event(at, event_id=event_id, fingerprint=fingerprint)
    built.kubernetes.reason = "BackOff"
    built.kubernetes.count = count
    return built


def test_a_quiet_group_takes_no_new_problem() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(event(0, event_id="a", fingerprint="f"))
    feeder.feed(event(1, event_id="b", fingerprint="f"))
    first = group_of(feeder, "a")
    assert first is not None
    # 40 s of silence: the same fingerprint again is a new incident's start.
    assert feeder.feed(event(41, event_id="c", fingerprint="f")) == []
    (created,) = feeder.feed(event(42, event_id="d", fingerprint="f"))
    assert created.type == U.GROUP_UPDATE_TYPE_CREATED
    assert created.group.group_id != first
    assert {m.event_id for m in created.group.members} == {"c", "d"}


def test_a_group_within_the_quiet_period_still_takes_members() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(event(0, event_id="a", fingerprint="f"))
    feeder.feed(event(1, event_id="b", fingerprint="f"))
    (joined,) = feeder.feed(event(25, event_id="c", fingerprint="f"))
    assert joined.type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert joined.group.group_id == group_of(feeder, "a")


def test_a_repeat_of_its_series_still_joins_a_quiet_group() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(counted_again(0, "a", "backoff", 1))
    feeder.feed(counted_again(1, "b", "backoff", 2))
    first = group_of(feeder, "a")
    # The cluster's spam filter lets one repeat through every few minutes.
    (joined,) = feeder.feed(counted_again(200, "c", "backoff", 30))
    assert joined.type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert joined.group.group_id == first
    # A first occurrence of that fingerprint (count 1) is no repeat.
    assert feeder.feed(counted_again(400, "d", "backoff", 1)) == []


def test_a_resolving_event_reaches_its_quiet_group() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(event(0, event_id="a", fingerprint="oom"))
    feeder.feed(event(1, event_id="b", fingerprint="oom"))
    resolved = event(120, event_id="c", fingerprint="oom")
    resolved.attributes["resolves"] = "true"
    updates = feeder.feed(resolved)
    assert updates[-1].group.status == U.GROUP_STATUS_RESOLVED


def test_quiet_after_zero_turns_the_rule_off() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=0)))
    feeder.feed(event(0, event_id="a", fingerprint="f"))
    feeder.feed(event(1, event_id="b", fingerprint="f"))
    (joined,) = feeder.feed(event(200, event_id="c", fingerprint="f"))
    assert joined.group.group_id == group_of(feeder, "a")


def _two_established_groups(feeder: Feeder) -> tuple[str, str]:
    """Group "early" (3 members, from 0 s) and group "late" (2, from 200 s),
    both still busy at 230 s."""
    for at in (0, 100, 200, 225):
        feeder.feed(event(at, fingerprint="early"))
    feeder.feed(event(200, fingerprint="late"))
    feeder.feed(event(226, fingerprint="late"))
    early = next(g for g in feeder.engine.groups.values() if g.member_count == 4)
    late = next(g for g in feeder.engine.groups.values() if g.member_count == 2)
    return early.group_id, late.group_id


def _bridge(at: float) -> event_pb2.Event:
    """Same fingerprint as "late", same resource as an "early" member."""
    return event(at, event_id="bridge", fingerprint="late", resource=pod("shared"))


def test_groups_that_began_apart_do_not_merge() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=0, merge_within=120)))
    early, late = _two_established_groups(feeder)
    feeder.feed(event(228, fingerprint="early", resource=pod("shared")))
    (joined,) = feeder.feed(_bridge(230))
    assert joined.type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert joined.group.group_id == early  # the larger of the two
    assert set(feeder.engine.groups) >= {early, late}


def test_merge_within_zero_lets_them_merge() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=0, merge_within=0)))
    early, late = _two_established_groups(feeder)
    feeder.feed(event(228, fingerprint="early", resource=pod("shared")))
    (merged,) = feeder.feed(_bridge(230))
    assert merged.type == U.GROUP_UPDATE_TYPE_MERGED
    assert merged.group.group_id == early
    assert list(merged.other_group_ids) == [late]
    assert late not in feeder.engine.groups


def connected(_a: str, _b: str) -> Relation | None:
    return (topology_pb2.RELATION_KIND_CONNECTED, 3)


def test_linked_resources_join_only_when_they_fail_together() -> None:
    feeder = Feeder()
    feeder.feed(event(0, event_id="calico", resource=pod("calico-node-x")), connected)
    (created,) = feeder.feed(event(4, event_id="cart", resource=pod("cart-1")), connected)
    assert created.type == U.GROUP_UPDATE_TYPE_CREATED
    edge = created.group.edges[0]
    assert edge.strategy == "topology"
    assert "linked 3 hops apart" in edge.reason
    # Minutes apart, the same link is no evidence.
    assert feeder.feed(event(90, event_id="later", resource=pod("web-1")), connected) == []


def firing(at: float, event_id: str, fingerprint: str) -> event_pb2.Event:
    """An alert firing from ``at`` on."""
    built = event(at, event_id=event_id, fingerprint=fingerprint)
    built.incident.alert_name = "HighRequestErrorRate"
    built.incident.status = event_pb2.ALERT_STATUS_FIRING
    built.incident.starts_at.CopyFrom(built.occurred_at)
    return built


def test_a_group_with_a_firing_alert_is_not_quiet() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(firing(0, "a", "errors"))
    feeder.feed(firing(1, "b", "errors"))
    # The next alert of the cascade waits for its rule's `for:`; the first still fires.
    (joined,) = feeder.feed(firing(90, "c", "errors"))
    assert joined.type == U.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert joined.group.group_id == group_of(feeder, "a")


def _burst(feeder: Feeder, at: float) -> str:
    """A group of three events on pod api-1 ending at ``at``; its id."""
    for offset in (2, 1, 0):
        feeder.feed(event(at - offset, fingerprint="burst", resource=pod("api-1")), apart)
    group = group_of(feeder, next(iter(feeder.engine.window.events)))
    assert group is not None
    return group


def apart(_a: str, _b: str) -> Relation | None:
    """Nothing in the graph links the two."""
    return (topology_pb2.RELATION_KIND_UNRELATED, 0)


def far(_a: str, _b: str) -> Relation | None:
    """Linked, but farther than asked."""
    return (topology_pb2.RELATION_KIND_UNRELATED, 4)


def unknown(_a: str, _b: str) -> Relation | None:
    return (topology_pb2.RELATION_KIND_UNKNOWN, 0)


def test_an_isolated_resource_joins_the_burst_around_it() -> None:
    feeder = Feeder()
    burst = _burst(feeder, 20)
    (joined,) = feeder.feed(event(25, event_id="db", resource=pod("mongodb-0")), apart)
    assert joined.group.group_id == burst
    (edge,) = [e for e in joined.group.edges if e.to_event_id == "db"]
    assert edge.reason.startswith("related to nothing failing per topology; 3 event(s)")
    # Long after the burst there is nothing to join.
    assert feeder.feed(event(60, event_id="late", resource=pod("mongodb-1")), apart) == []


def test_a_resource_linked_farther_away_or_unknown_is_not_isolated() -> None:
    for relation in (far, unknown):
        feeder = Feeder()
        _burst(feeder, 20)
        assert feeder.feed(event(25, resource=pod("rollout-new-0")), relation) == []


def test_neighbours_topology_does_not_know_say_nothing_about_isolation() -> None:
    feeder = Feeder()
    burst = _burst(feeder, 20)
    feeder.feed(event(21, resource=pod("node-metrics")), unknown)

    def apart_but_unknown_node(_a: str, b: str) -> Relation | None:
        return unknown(_a, b) if "node-metrics" in b else apart(_a, b)

    (joined,) = feeder.feed(event(25, resource=pod("mongodb-0")), apart_but_unknown_node)
    assert joined.group.group_id == burst


def test_a_match_with_a_resolved_group_is_a_recurrence_however_quiet() -> None:
    feeder = Feeder(CorrelationEngine(config_with(quiet_after=30)))
    feeder.feed(event(0, event_id="a", fingerprint="oom", resource=pod("cart-1")))
    (first,) = feeder.feed(event(5, event_id="b", fingerprint="oom", resource=pod("cart-1")))
    resolved = event(20, event_id="c", fingerprint="oom", resource=pod("cart-1"))
    resolved.attributes["resolves"] = "true"
    feeder.feed(resolved)
    # 80 s after the group's last event, on the same Pod, with another fingerprint.
    updates = feeder.feed(event(100, event_id="again", fingerprint="other", resource=pod("cart-1")))
    created = [u for u in updates if u.type == U.GROUP_UPDATE_TYPE_CREATED]
    assert len(created) == 1
    assert [(k.group_id, k.relationship_type) for k in created[0].group.links] == [
        (first.group.group_id, U.RELATIONSHIP_TYPE_RECURRENCE)
    ]
