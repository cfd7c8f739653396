"""The root-cause ranking: order, topology direction, priors, silent causes, workloads;
and the operator's action rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrmesh.correlation.analysis.actions import (
    BUILT_IN_RULES,
    ActionFileError,
    load_rules,
    recommend,
)
from corrmesh.correlation.analysis.facts import GroupFacts
from corrmesh.correlation.analysis.root_cause import RootCauseKnobs, rank_root_causes
from tests.unit.test_analysis_patterns import I, k8s, nid, ref


def names(candidates: list) -> list[str]:  # type: ignore[type-arg]
    return [c.ref.name for c in candidates]


def test_the_upstream_failing_resource_outranks_the_first_to_complain() -> None:
    events = [
        k8s(0, "Pod", "frontend-a1b2c-x1y2z", "Unhealthy", "Readiness probe failed"),
        k8s(5, "Pod", "checkout-d4e5f-q9w8e", "Unhealthy", "Readiness probe failed"),
        k8s(9, "Pod", "payment-g7h8i-r5t6y", "Unhealthy", "Readiness probe failed"),
    ]
    frontend, checkout, payment = (
        nid("Pod", "frontend-a1b2c-x1y2z"),
        nid("Pod", "checkout-d4e5f-q9w8e"),
        nid("Pod", "payment-g7h8i-r5t6y"),
    )
    facts = GroupFacts.of(events)
    by_order = rank_root_causes(facts, reach={})
    assert names(by_order)[0] == "frontend-a1b2c-x1y2z", "no topology: the first one"
    reach = {payment: {checkout: 1, frontend: 2}, checkout: {frontend: 1}}
    ranked = rank_root_causes(facts, reach)
    assert names(ranked) == ["payment-g7h8i-r5t6y", "checkout-d4e5f-q9w8e", "frontend-a1b2c-x1y2z"]
    assert "its failure reaches 2 of the other 2" in ranked[0].reason
    assert ranked[0].event_id == events[2].event_id


def test_a_silent_config_map_every_failing_pod_mounts_becomes_a_candidate() -> None:
    events = [
        k8s(
            0, "Pod", "frontend-tnfj2ncbb8-cnhn8", "BackOff", "Back-off restarting failed container"
        ),
        k8s(
            3, "Pod", "frontend-tnfj2ncbb8-qddnz", "BackOff", "Back-off restarting failed container"
        ),
    ]
    config = ref("ConfigMap", "frontend-config")
    reach = {
        nid("ConfigMap", "frontend-config"): {
            nid("Pod", "frontend-tnfj2ncbb8-cnhn8"): 1,
            nid("Pod", "frontend-tnfj2ncbb8-qddnz"): 1,
        }
    }
    ranked = rank_root_causes(
        GroupFacts.of(events), reach, {nid("ConfigMap", "frontend-config"): config}
    )
    assert "frontend-config" in names(ranked)
    silent = next(c for c in ranked if c.ref.name == "frontend-config")
    assert silent.event_id == "" and "raised nothing itself" in silent.reason
    # Covering one of two failing pods is not enough.
    half = {nid("ConfigMap", "frontend-config"): {nid("Pod", "frontend-tnfj2ncbb8-cnhn8"): 1}}
    assert "frontend-config" not in names(
        rank_root_causes(GroupFacts.of(events), half, {nid("ConfigMap", "frontend-config"): config})
    )


def test_failing_pods_roll_up_to_the_deployment_that_owns_them() -> None:
    events = [
        k8s(0, "Pod", "cart-6hs5v4rw9-2x49k", "OOMKilled", "OOMKilled container=server"),
        k8s(4, "Pod", "cart-6hs5v4rw9-52cgc", "OOMKilled", "OOMKilled container=server"),
        k8s(9, "Pod", "frontend-tnfj2ncbb8-cnhn8", "Unhealthy", "Readiness probe failed"),
    ]
    deployment = nid("Deployment", "cart")
    reach = {
        nid("Pod", "cart-6hs5v4rw9-2x49k"): {nid("ReplicaSet", "cart-6hs5v4rw9"): 1, deployment: 2},
        nid("Pod", "cart-6hs5v4rw9-52cgc"): {nid("ReplicaSet", "cart-6hs5v4rw9"): 1, deployment: 2},
        # frontend's failure reaches a deployment it is not named after: no roll-up.
        nid("Pod", "frontend-tnfj2ncbb8-cnhn8"): {nid("Deployment", "shop"): 1},
    }
    ranked = rank_root_causes(GroupFacts.of(events), reach)
    assert names(ranked)[0] == "cart"
    assert ranked[0].ref.kind == "deployment"
    assert "owns 2 failing resources" in ranked[0].reason
    assert "shop" not in names(ranked)
    assert "cart" not in names(
        rank_root_causes(GroupFacts.of(events), reach, knobs=RootCauseKnobs(roll_up_kinds=()))
    )


def test_info_events_are_context_not_candidates() -> None:
    events = [
        k8s(0, "Deployment", "api", "ScalingReplicaSet", "Scaled up replica set api-5d8f9 to 2", I),
        k8s(5, "Pod", "api-5d8f9-abcde", "BackOff", "Back-off restarting failed container"),
    ]
    assert names(rank_root_causes(GroupFacts.of(events), {})) == ["api-5d8f9-abcde"]


def test_operator_rules_come_first_and_bad_files_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text(
        "actions:\n"
        "  - pattern: resource_exhaustion\n"
        "    cause: OOMKilled\n"
        "    action: Page the {root} team\n"
    )
    rules = load_rules(path) + list(BUILT_IN_RULES)
    assert recommend(rules, "resource_exhaustion", "OOMKilled", "cart") == "Page the cart team"
    assert recommend(rules, "resource_exhaustion", "CPUThrottlingHigh", "cart").startswith(
        "Give cart more"
    )
    assert recommend(rules, "no_such_pattern", "", "cart") == ""
    path.write_text("actions:\n  - pattern: node_failure\n    acton: typo\n")
    with pytest.raises(ActionFileError, match=r"actions\[0\]\.acton: is not a known field"):
        load_rules(path)
    path.write_text("actions:\n  - pattern: node_failure\n")
    with pytest.raises(ActionFileError, match=r"actions\[0\]\.action: is required"):
        load_rules(path)
