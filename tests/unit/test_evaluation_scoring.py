"""The evaluation scorer on small hand-made cases whose answers are worked out below."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrmesh.evaluation.answer import read_answer
from corrmesh.evaluation.scenario import load_scenario, load_truth
from corrmesh.evaluation.scoring import Contingency, Scores, score
from tests.support.evaluation import event, incident, write_answer_files, write_scenario

IDS = [f"e-{n:06d}" for n in range(1, 7)]
E1, E2, E3, E4, E5, E6 = IDS


def run(answer_dir: Path, assignments: list[tuple[str, str | None]], groups=None) -> Scores:
    """Scores an answer written to ``answer_dir`` against the scenario beside it."""
    scenario_dir = answer_dir.parent / "scenario"
    write_answer_files(answer_dir, assignments, groups or {})
    return score(load_scenario(scenario_dir), load_truth(scenario_dir), read_answer(answer_dir))


@pytest.fixture
def two_incidents(tmp_path: Path) -> Path:
    """Incident A = e1..e3, incident B = e4, e5, noise e6, one event a second."""
    events = [event(n, n, f"pod//p{n}", service="s") for n in range(1, 7)]
    incidents = [incident(1, "pod//p1", [E1, E2, E3]), incident(2, "pod//p4", [E4, E5])]
    return write_scenario(tmp_path / "scenario", events, incidents=incidents, noise=[E6])


def test_pairwise_ari_noise_reduction_split_and_mixing(tmp_path: Path, two_incidents: Path) -> None:
    # g1 = {e1, e2}, g2 = {e3, e4, e5}, e6 ungrouped.
    s = run(
        tmp_path / "answer",
        [(E1, "g1"), (E2, "g1"), (E3, "g2"), (E4, "g2"), (E5, "g2"), (E6, None)],
    )
    # True pairs: 3 in A + 1 in B = 4. Predicted: 1 in g1 + 3 in g2 = 4.
    # Correct: e1-e2 and e4-e5 = 2. So P = R = F1 = 0.5.
    assert (s.pairwise_precision, s.pairwise_recall, s.pairwise_f1) == (0.5, 0.5, 0.5)
    # Incident events, n = 5, 10 pairs: expected = 4 * 4 / 10 = 1.6, maximum = 4,
    # ARI = (2 - 1.6) / (4 - 1.6) = 1/6.
    assert s.ari_incident_events == pytest.approx(1 / 6)
    # All events, n = 6, 15 pairs: e6 is a singleton on both sides, so the sums stay;
    # expected = 16/15, ARI = (2 - 16/15) / (4 - 16/15) = 14/44.
    assert s.ari == pytest.approx(14 / 44)
    # Two groups and one ungrouped event out of six.
    assert (s.alerts_in, s.groups_out, s.groups, s.ungrouped) == (6, 3, 2, 1)
    assert s.noise_reduction == pytest.approx(0.5)
    # A lies in g1 and g2, B only in g2; g2 mixes A and B, g1 does not.
    assert s.incidents_split == 0.5
    assert s.groups_mixing_incidents == 0.5
    assert s.groups_with_incident_events == 2
    # The one noise event is in no group.
    assert s.noise_in_incident_groups == 0.0
    assert (s.events, s.incident_events, s.noise_events, s.incidents) == (6, 5, 1, 2)
    assert s.coverage == 1.0


def test_missing_lines_count_as_ungrouped(tmp_path: Path, two_incidents: Path) -> None:
    # e2 and e6 have no line at all.
    missing = run(tmp_path / "missing", [(E1, "g1"), (E3, "g2"), (E4, "g2"), (E5, "g2")])
    explicit = run(
        tmp_path / "explicit",
        [(E1, "g1"), (E2, None), (E3, "g2"), (E4, "g2"), (E5, "g2"), (E6, None)],
    )
    assert missing.coverage == pytest.approx(4 / 6)
    assert explicit.coverage == 1.0
    # Predicted pairs: the three of g2; correct: e4-e5 only. P = 1/3, R = 1/4,
    # F1 = 2 * (1/12) / (7/12) = 2/7.
    assert missing.pairwise_precision == pytest.approx(1 / 3)
    assert missing.pairwise_recall == pytest.approx(1 / 4)
    assert missing.pairwise_f1 == pytest.approx(2 / 7)
    # g1, g2, e2 and e6 alone: four units out of six events.
    assert (missing.groups_out, missing.ungrouped) == (4, 2)
    assert missing.noise_reduction == pytest.approx(1 / 3)
    # e1 alone in g1, e3 in g2: A is split; counting e2 as a piece changes nothing more.
    assert missing.incidents_split == 0.5
    assert missing.incidents_fragmented == 0.5
    same = {k: v for k, v in explicit.as_dict().items() if k != "coverage"}
    assert same == {k: v for k, v in missing.as_dict().items() if k != "coverage"}


def test_ungrouped_events_fragment_an_incident_without_splitting_it(
    tmp_path: Path, two_incidents: Path
) -> None:
    s = run(tmp_path / "answer", [(E1, "g1"), (E2, "g1"), (E3, None), (E4, "g2"), (E5, "g2")])
    # A: e1, e2 in g1 and e3 alone; B whole in g2.
    assert s.incidents_split == 0.0
    assert s.incidents_fragmented == 0.5
    assert s.groups_mixing_incidents == 0.0
    assert s.pairwise_precision == 1.0
    assert s.pairwise_recall == pytest.approx(2 / 4)


def test_no_grouped_pair_leaves_precision_undefined_and_f1_zero(
    tmp_path: Path, two_incidents: Path
) -> None:
    s = run(tmp_path / "answer", [(e, None) for e in IDS])
    assert s.pairwise_precision is None
    assert s.pairwise_recall == 0.0
    assert s.pairwise_f1 == 0.0
    assert s.noise_reduction == 0.0
    assert s.groups_mixing_incidents is None
    # Every incident is a miss: nothing of it is grouped.
    assert (s.rc_top1_strict, s.rc_top3_service) == (0.0, 0.0)


def test_noise_in_groups_holding_incident_events(tmp_path: Path, two_incidents: Path) -> None:
    s = run(
        tmp_path / "answer",
        [(E1, "g1"), (E2, "g1"), (E3, "g1"), (E4, "g2"), (E5, "g2"), (E6, "g2")],
    )
    assert s.pairwise_f1 == 1.0
    assert s.noise_in_incident_groups == 1.0
    # The noise event makes all-event pairs imperfect: 6 predicted pairs, 4 correct.
    assert s.ari < 1.0 and s.ari_incident_events == 1.0


def test_contingency_degenerate_labelings() -> None:
    # Both all singletons, or both one cluster: maximum equals expected, ARI is 1.
    assert Contingency(["a", "b", "c"], [1, 2, 3]).adjusted_rand_index() == 1.0
    assert Contingency(["a", "a", "a"], [1, 1, 1]).adjusted_rand_index() == 1.0
    assert Contingency(["a"], [1]).adjusted_rand_index() == 1.0
    # A single truth cluster predicted as singletons is no better than chance.
    assert Contingency(["a", "a", "a"], [1, 2, 3]).adjusted_rand_index() == 0.0
    with pytest.raises(ValueError):
        Contingency(["a"], [1, 2])


CART_1, CART_2, WEB_1 = "pod/shop/cart-1", "pod/shop/cart-2", "pod/shop/web-1"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """cart's pods: cart-1 (its events name the service), cart-2 (only topology does)."""
    events = [
        event(1, 1, CART_1, service="cart"),
        event(2, 2, WEB_1, service="web"),
        event(3, 3, CART_2),
    ]
    nodes = ["service/shop/cart", CART_1, CART_2, "deployment/shop/cart", "service/shop/web", WEB_1]
    edges = [
        ("service/shop/cart", CART_1, "owns"),
        ("service/shop/cart", CART_2, "owns"),
        ("service/shop/web", WEB_1, "owns"),
        (WEB_1, "service/shop/cart", "calls"),
    ]
    incidents = [incident(1, CART_1, [E1, E2, E3], service="cart")]
    return write_scenario(tmp_path / "scenario", events, nodes, edges, incidents)


@pytest.mark.parametrize(
    ("candidates", "strict", "service"),
    [
        ([CART_1], (1, 1), (1, 1)),
        (["cart-1"], (1, 1), (1, 1)),  # the bare name
        (["cart"], (0, 0), (1, 1)),  # the service
        ([CART_2], (0, 0), (1, 1)),  # a pod of the service, known from the topology
        (["cart-2"], (0, 0), (1, 1)),  # its bare name
        (["service/shop/cart"], (0, 0), (1, 1)),  # the service node
        (["deployment/shop/cart"], (0, 0), (0, 0)),  # no service says it owns it
        ([WEB_1, "web"], (0, 0), (0, 0)),
        ([WEB_1, "cart", CART_1], (0, 1), (0, 1)),  # strict at rank 3, service at rank 2
        ([WEB_1, "x", "y", CART_1], (0, 0), (0, 0)),  # rank 4 is outside the top 3
        ([], (0, 0), (0, 0)),
    ],
)
def test_root_cause_strict_and_service_level(
    tmp_path: Path,
    shop: Path,
    candidates: list[str],
    strict: tuple[int, int],
    service: tuple[int, int],
) -> None:
    s = run(tmp_path / "answer", [(E1, "g"), (E2, "g"), (E3, "g")], {"g": candidates})
    assert (s.rc_top1_strict, s.rc_top3_strict) == strict
    assert (s.rc_top1_service, s.rc_top3_service) == service


def test_alternatives_count_and_an_empty_service_matches_strictly_only(tmp_path: Path) -> None:
    node_id, cni = "node//n1", "pod/kube-system/calico-1"
    events = [event(1, 1, "pod/shop/a-1", service="a"), event(2, 2, cni)]
    incidents = [incident(1, node_id, [E1, E2], alternatives=[cni])]
    write_scenario(tmp_path / "scenario", events, [node_id, cni], incidents=incidents)
    by_alternative = run(tmp_path / "alt", [(E1, "g"), (E2, "g")], {"g": ["calico-1"]})
    assert by_alternative.rc_top1_strict == 1.0
    by_service = run(tmp_path / "svc", [(E1, "g"), (E2, "g")], {"g": ["a", "pod/shop/a-1"]})
    assert (by_service.rc_top3_strict, by_service.rc_top3_service) == (0.0, 0.0)


def test_plurality_ties_go_to_the_group_whose_first_event_is_earliest(tmp_path: Path) -> None:
    # e1 is noise; incident X = e2..e5. "z" holds e1, e3, e5; "a" holds e2, e4:
    # two events of X each, and z's first event (e1) comes before a's (e2).
    events = [event(n, n, f"pod//p{n}") for n in range(1, 6)]
    incidents = [incident(1, "pod//p2", [E2, E3, E4, E5])]
    write_scenario(tmp_path / "scenario", events, incidents=incidents, noise=[E1])
    groups = {"z": ["pod//p2"], "a": ["pod//p4"]}
    tie = run(tmp_path / "tie", [(E1, "z"), (E2, "a"), (E3, "z"), (E4, "a"), (E5, "z")], groups)
    assert tie.rc_top1_strict == 1.0
    # Without e1, a's first event is the earlier one: its candidates are scored.
    no_noise = run(tmp_path / "late", [(E2, "a"), (E3, "z"), (E4, "a"), (E5, "z")], groups)
    assert no_noise.rc_top1_strict == 0.0
    # A plurality beats an earlier start.
    majority = run(
        tmp_path / "most", [(E1, "z"), (E2, "a"), (E3, "a"), (E4, "a"), (E5, "z")], groups
    )
    assert majority.rc_top1_strict == 0.0


def test_a_group_missing_from_groups_jsonl_has_no_candidates(tmp_path: Path, shop: Path) -> None:
    s = run(tmp_path / "answer", [(E1, "g"), (E2, "g"), (E3, "g")], {"other": [CART_1]})
    assert (s.rc_top1_strict, s.rc_top3_service) == (0.0, 0.0)
