"""Each pattern on events built from real Kubernetes reasons and messages: matches, and
near-misses that must not match."""

from __future__ import annotations

from collections.abc import Mapping

from corrmesh.correlation.analysis.facts import GroupFacts, node_id
from corrmesh.correlation.analysis.patterns import Found, PatternContext, best_match
from corrmesh.correlation.analysis.patterns.cascading import CascadingFailure
from corrmesh.correlation.analysis.patterns.deployment import BadDeployment
from corrmesh.correlation.analysis.patterns.exhaustion import ResourceExhaustion
from corrmesh.correlation.analysis.patterns.network import NetworkPartition
from corrmesh.correlation.analysis.patterns.node import NodeFailure
from corrmesh.correlation.analysis.patterns.recurring import RecurringFailure, signatures
from corrmesh.correlation.analysis.patterns.storm import AlertStorm
from corrmesh.correlation.analysis.root_cause import rank_root_causes
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2
from tests.support.correlation_events import event

W = event_pb2.SEVERITY_WARNING
I = event_pb2.SEVERITY_INFO  # noqa: E741 (as the severities read)
HOUR = 3600.0


def ref(kind: str, name: str, namespace: str = "default") -> event_pb2.ResourceRef:
    return event_pb2.ResourceRef(
        kind=kind, namespace="" if kind == "Node" else namespace, name=name
    )


def k8s(at: float, kind: str, name: str, reason: str, message: str, severity: int = W) -> EventInfo:
    return EventInfo.from_event(
        event(
            at,
            resource=ref(kind, name),
            type=reason,
            title=f"{kind} {name}: {message}",
            description=message,
            severity=severity,
            source="kubernetes",
        )
    )


def context(
    events: list[EventInfo],
    reach: Mapping[str, Mapping[str, int]] | None = None,
    history: Mapping[str, list[int]] | None = None,
) -> PatternContext:
    facts = GroupFacts.of(events)
    reach = reach or {}
    return PatternContext(facts, reach, rank_root_causes(facts, reach), history or {})


def nid(kind: str, name: str) -> str:
    return node_id(ref(kind, name))


BACKOFF = "Back-off restarting failed container server in pod {pod}_default(d8ddd)"
READINESS_503 = "Readiness probe failed: HTTP probe failed with statuscode: 503"
CONNECT = 'Readiness probe failed: timeout: failed to connect service "10.8.1.17:7070" within 1s'


# -- node failure ----------------------------------------------------------------------


def node_down() -> list[EventInfo]:
    node = "gke-pool-18072e8c-tb9q"
    return [
        k8s(0, "Node", node, "NodeNotReady", f"Node {node} status is now: NodeNotReady"),
        k8s(2, "Pod", "cart-6hs5v4rw9-v2bq4", "NodeNotReady", "Node is not ready"),
        k8s(
            40,
            "Pod",
            "cart-6hs5v4rw9-v2bq4",
            "TaintManagerEviction",
            "Marking for deletion Pod default/cart-6hs5v4rw9-v2bq4",
            I,
        ),
        k8s(
            45,
            "Pod",
            "cart-6hs5v4rw9-x7k2p",
            "FailedScheduling",
            "0/4 nodes are available: 1 node(s) had untolerated taint "
            "{node.kubernetes.io/unreachable: }, 3 Insufficient cpu.",
        ),
    ]


def test_node_failure_roots_at_the_node_and_chains_its_consequences() -> None:
    found = NodeFailure().match(context(node_down()))
    assert found is not None
    assert found.root_ref.kind == "Node" and found.root_ref.name == "gke-pool-18072e8c-tb9q"
    assert [e.type for e in found.chain] == [
        "NodeNotReady",
        "NodeNotReady",
        "TaintManagerEviction",
        "FailedScheduling",
    ]
    assert (
        found.summary == "Root cause: node gke-pool-18072e8c-tb9q went NotReady, taking down 1 pod"
    )
    best = best_match(context(node_down()))
    assert best is not None and best.pattern == "node_failure"


def test_scheduling_for_lack_of_cpu_is_not_a_node_failure() -> None:
    events = [
        k8s(
            0,
            "Pod",
            "email-9mbz4bdrf-njw6n",
            "FailedScheduling",
            "0/4 nodes are available: 4 Insufficient cpu. preemption: 0/4 nodes are available",
        ),
    ]
    assert NodeFailure().match(context(events)) is None
    # A NodeNotReady with no consequence yet is not enough either.
    assert NodeFailure().match(context(node_down()[:1])) is None


# -- bad deployment ------------------------------------------------------------------


def rollout(new_pods_fail: bool) -> list[EventInfo]:
    pod = "productcatalog-jrnt7r2q42-w8glj"
    events = [
        k8s(
            0,
            "Deployment",
            "productcatalog",
            "ScalingReplicaSet",
            "Scaled up replica set productcatalog-jrnt7r2q42 to 1",
            I,
        ),
        k8s(
            1,
            "ReplicaSet",
            "productcatalog-jrnt7r2q42",
            "SuccessfulCreate",
            f"Created pod: {pod}",
            I,
        ),
        k8s(9, "Pod", pod, "Started", "Started container server", I),
    ]
    if new_pods_fail:
        events += [
            k8s(20, "Pod", pod, "BackOff", BACKOFF.format(pod=pod)),
            k8s(50, "Pod", pod, "BackOff", BACKOFF.format(pod=pod)),
        ]
    return events


def test_bad_deployment_blames_the_rollout_when_its_new_pods_crash() -> None:
    found = BadDeployment().match(context(rollout(new_pods_fail=True)))
    assert found is not None
    assert (found.root_ref.kind, found.root_ref.name) == ("Deployment", "productcatalog")
    assert found.confidence >= 0.9, "the failing pods belong to the new replica set"
    assert "rollout of productcatalog (productcatalog-jrnt7r2q42)" in found.summary
    assert found.chain[0].type == "ScalingReplicaSet"


def test_a_healthy_rollout_or_failures_elsewhere_are_no_bad_deployment() -> None:
    assert BadDeployment().match(context(rollout(new_pods_fail=False))) is None
    other = [
        *rollout(new_pods_fail=False),
        k8s(20, "Pod", "cart-6hs5v4rw9-2x49k", "BackOff", BACKOFF.format(pod="cart")),
        k8s(30, "Pod", "cart-6hs5v4rw9-2x49k", "BackOff", BACKOFF.format(pod="cart")),
    ]
    assert BadDeployment().match(context(other)) is None
    scale_down = [
        k8s(
            0,
            "Deployment",
            "productcatalog",
            "ScalingReplicaSet",
            "Scaled down replica set productcatalog-jrnt7r2q42 to 0",
            I,
        ),
        *rollout(new_pods_fail=True)[3:],
    ]
    assert BadDeployment().match(context(scale_down)) is None


# -- resource exhaustion and cascades --------------------------------------------------


def oom_then_callers() -> list[EventInfo]:
    return [
        k8s(
            0,
            "Pod",
            "cart-6hs5v4rw9-2x49k",
            "OOMKilled",
            "the last termination reason is OOMKilled container=server pod=cart-6hs5v4rw9-2x49k",
        ),
        k8s(5, "Pod", "cart-6hs5v4rw9-2x49k", "BackOff", BACKOFF.format(pod="cart")),
        k8s(12, "Pod", "checkout-44sstprrdk-mk7ck", "Unhealthy", CONNECT),
        k8s(18, "Pod", "frontend-tnfj2ncbb8-cnhn8", "Unhealthy", READINESS_503),
    ]


def test_resource_exhaustion_names_the_workload_that_ran_out() -> None:
    found = ResourceExhaustion().match(context(oom_then_callers()))
    assert found is not None
    assert found.root_ref.name == "cart-6hs5v4rw9-2x49k"
    assert found.summary == (
        "Root cause: cart memory exhaustion (OOMKilled) affecting 2 other resources"
    )


def test_probes_failing_alone_are_no_exhaustion() -> None:
    events = oom_then_callers()[2:]
    assert ResourceExhaustion().match(context(events)) is None


def test_a_cascade_follows_the_topology_from_the_exhausted_pod() -> None:
    cart, checkout, frontend = (
        nid("Pod", "cart-6hs5v4rw9-2x49k"),
        nid("Pod", "checkout-44sstprrdk-mk7ck"),
        nid("Pod", "frontend-tnfj2ncbb8-cnhn8"),
    )
    reach = {cart: {checkout: 1, frontend: 2}, checkout: {frontend: 1}}
    found = CascadingFailure().match(context(oom_then_callers(), reach))
    assert found is not None
    assert found.root_ref.name == "cart-6hs5v4rw9-2x49k"
    assert found.summary == "Root cause: cart memory exhaustion affecting 2 services"
    assert [e.resource.name for e in found.chain] == [
        "cart-6hs5v4rw9-2x49k",
        "checkout-44sstprrdk-mk7ck",
        "frontend-tnfj2ncbb8-cnhn8",
    ]
    best = best_match(context(oom_then_callers(), reach))
    assert best is not None and best.pattern == "cascading_failure"


def test_failures_the_topology_does_not_connect_are_no_cascade() -> None:
    assert CascadingFailure().match(context(oom_then_callers(), reach={})) is None
    # Connected, but the dependents failed before the supposed root.
    cart, checkout, frontend = (
        nid("Pod", "cart-6hs5v4rw9-2x49k"),
        nid("Pod", "checkout-44sstprrdk-mk7ck"),
        nid("Pod", "frontend-tnfj2ncbb8-cnhn8"),
    )
    late_root = [
        k8s(0, "Pod", "checkout-44sstprrdk-mk7ck", "Unhealthy", CONNECT),
        k8s(1, "Pod", "frontend-tnfj2ncbb8-cnhn8", "Unhealthy", READINESS_503),
        k8s(9, "Pod", "cart-6hs5v4rw9-2x49k", "Unhealthy", READINESS_503),
    ]
    assert CascadingFailure().match(context(late_root, {cart: {checkout: 1, frontend: 2}})) is None


# -- network partition ------------------------------------------------------------------


def partition_events() -> list[EventInfo]:
    return [
        k8s(
            0,
            "Pod",
            "redis-cart-78ct4q52pq-d8l2f",
            "Unhealthy",
            "Liveness probe failed: dial tcp 10.8.1.11:6379: i/o timeout",
        ),
        k8s(
            3,
            "Pod",
            "productcatalog-mgjgw6c7n9-5jhmr",
            "Unhealthy",
            "Readiness probe failed: timeout: health rpc did not complete within 1s",
        ),
        k8s(
            4,
            "Pod",
            "calico-node-x2k9p",
            "Unhealthy",
            "Readiness probe failed: calico/node is not ready: BIRD is not ready: "
            "BGP not established with 10.128.0.5",
        ),
    ]


def test_partition_points_at_the_node_the_erroring_pods_share() -> None:
    node = nid("Node", "gke-pool-18072e8c-tb9q")
    reach = {
        node: {
            nid("Pod", "redis-cart-78ct4q52pq-d8l2f"): 1,
            nid("Pod", "productcatalog-mgjgw6c7n9-5jhmr"): 1,
            nid("Pod", "calico-node-x2k9p"): 1,
        }
    }
    found = NetworkPartition().match(context(partition_events(), reach))
    assert found is not None
    assert (found.root_ref.kind, found.root_ref.name) == ("node", "gke-pool-18072e8c-tb9q")
    assert found.confidence >= 0.8
    assert "3 services report connection errors" in found.summary


def test_one_service_timing_out_is_no_partition() -> None:
    events = [
        k8s(
            0,
            "Pod",
            "redis-cart-78ct4q52pq-d8l2f",
            "Unhealthy",
            "Liveness probe failed: dial tcp 10.8.1.11:6379: i/o timeout",
        ),
        k8s(
            9,
            "Pod",
            "redis-cart-78ct4q52pq-d8l2f",
            "Unhealthy",
            "Readiness probe failed: dial tcp 10.8.1.11:6379: i/o timeout",
        ),
        k8s(10, "Pod", "frontend-tnfj2ncbb8-cnhn8", "Unhealthy", READINESS_503),
    ]
    assert NetworkPartition().match(context(events)) is None


# -- recurring failure ----------------------------------------------------------------


def oom_at(hours: float) -> list[EventInfo]:
    pod = "currency-hwjl7nzv9-z75tg"
    at = hours * HOUR
    return [
        k8s(
            at,
            "Pod",
            pod,
            "OOMKilled",
            f"the last termination reason is OOMKilled container=server pod={pod}",
        ),
        k8s(at + 30, "Pod", pod, "BackOff", BACKOFF.format(pod=pod)),
    ]


def history_of(*hours: float) -> dict[str, list[int]]:
    history: dict[str, list[int]] = {}
    for h in hours:
        for key, at in signatures(oom_at(h)).items():
            history.setdefault(key, []).append(at)
    return history


def test_the_same_oom_every_two_hours_is_recurring() -> None:
    found = RecurringFailure().match(context(oom_at(4), history=history_of(0, 2)))
    assert found is not None
    assert found.summary == "Root cause: OOMKilled on currency recurs every 2.0 h (3 times so far)"
    best = best_match(context(oom_at(4), history=history_of(0, 2)))
    assert best is not None and best.pattern == "recurring_failure"


def test_irregular_or_too_few_repeats_are_not_recurring() -> None:
    assert RecurringFailure().match(context(oom_at(4), history=history_of(2))) is None
    assert RecurringFailure().match(context(oom_at(4), history=history_of(0, 3.5))) is None


# -- alert storm -------------------------------------------------------------------------


def test_a_scale_out_beyond_capacity_is_a_storm_rooted_at_the_rollout() -> None:
    events = [
        k8s(
            0,
            "Deployment",
            "email",
            "ScalingReplicaSet",
            "Scaled up replica set email-9mbz4bdrf to 42",
            I,
        )
    ] + [
        k8s(
            1 + i * 0.5,
            "Pod",
            f"email-9mbz4bdrf-p{i:03d}",
            "FailedScheduling",
            "0/4 nodes are available: 4 Insufficient cpu.",
        )
        for i in range(60)
    ]
    found = AlertStorm().match(context(events))
    assert found is not None
    assert found.root_ref.name == "email"
    assert "61 events" in found.summary and "mostly FailedScheduling" in found.summary
    best = best_match(context(events))
    assert isinstance(best, Found) and best.pattern == "alert_storm"


def test_a_steady_trickle_is_no_storm() -> None:
    events = [
        k8s(i * 30.0, "Pod", "frontend-tnfj2ncbb8-cnhn8", "Unhealthy", READINESS_503)
        for i in range(60)
    ]
    assert AlertStorm().match(context(events)) is None
