"""The feedback weight rule: bounded steps, per domain, the input left untouched."""

from __future__ import annotations

import pytest

from corrmesh.correlation.config import default_config, strategy_settings, validate_config
from corrmesh.correlation.feedback import (
    MIN_WEIGHT,
    FeedbackTarget,
    adjust_weights,
    next_weight,
    validate_feedback,
    weights_of,
)
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2

F = correlation_pb2.FeedbackType
K8S = event_pb2.DOMAIN_KUBERNETES
DICOM = event_pb2.DOMAIN_DICOM


def weight(config: correlation_pb2.CorrelationConfig, name: str, domain: int) -> float:
    return strategy_settings(config, name, domain).weight


def test_wrong_member_lowers_only_the_groups_domain_and_leaves_the_input_alone() -> None:
    config = default_config()
    before = config.SerializeToString()
    updated = adjust_weights(config, K8S, ["fingerprint", "temporal"], F.FEEDBACK_TYPE_WRONG_MEMBER)
    assert config.SerializeToString() == before
    assert weight(updated, "fingerprint", K8S) == pytest.approx(0.9)
    assert weight(updated, "temporal", K8S) == pytest.approx(0.9)
    assert weight(updated, "pattern", K8S) == 1.0
    assert weight(updated, "fingerprint", DICOM) == 1.0
    assert weight(updated, "fingerprint", event_pb2.DOMAIN_UNSPECIFIED) == 1.0
    entry = next(e for e in updated.strategies if (e.name, e.domain) == ("fingerprint", K8S))
    general = next(e for e in config.strategies if e.name == "fingerprint")
    assert (entry.enabled, entry.threshold) == (general.enabled, general.threshold)
    violations = FieldViolations()
    validate_config(updated, violations)
    assert not violations


def test_a_domain_entry_is_reused_and_copied_settings_are_kept() -> None:
    config = default_config()
    config.strategies.add(name="pattern", domain=K8S, enabled=False, weight=0.5, threshold=0.3)
    once = adjust_weights(config, K8S, ["pattern"], F.FEEDBACK_TYPE_WRONG_MEMBER)
    twice = adjust_weights(once, K8S, ["pattern"], F.FEEDBACK_TYPE_WRONG_MEMBER)
    entries = [e for e in twice.strategies if (e.name, e.domain) == ("pattern", K8S)]
    assert len(entries) == 1
    assert entries[0].weight == pytest.approx(0.5 * 0.9 * 0.9)
    assert not entries[0].enabled
    assert entries[0].threshold == pytest.approx(0.3)


def test_weights_stay_within_bounds_after_many_steps() -> None:
    low = 1.0
    for _ in range(200):
        low = next_weight(low, F.FEEDBACK_TYPE_WRONG_MEMBER)
    assert low == MIN_WEIGHT
    high = MIN_WEIGHT
    for step in range(200):
        raised = next_weight(high, F.FEEDBACK_TYPE_GOOD_GROUP)
        assert raised >= high and raised <= 1.0, step
        high = raised
    assert high == pytest.approx(1.0)
    assert next_weight(0.5, F.FEEDBACK_TYPE_GOOD_GROUP) == pytest.approx(0.55)
    assert next_weight(0.42, F.FEEDBACK_TYPE_MISSED_LINK) == 0.42


def test_a_strategy_named_twice_moves_once_and_missed_link_changes_nothing() -> None:
    config = default_config()
    updated = adjust_weights(config, K8S, ["source", "source"], F.FEEDBACK_TYPE_WRONG_MEMBER)
    assert weight(updated, "source", K8S) == pytest.approx(0.9)
    same = adjust_weights(config, K8S, ["source"], F.FEEDBACK_TYPE_MISSED_LINK)
    assert weight(same, "source", K8S) == 1.0
    reported = weights_of(updated, K8S, ["source", "pattern"])
    assert [(w.strategy, w.domain, round(w.weight, 6)) for w in reported] == [
        ("source", K8S, 0.9),
        ("pattern", K8S, 1.0),
    ]


def test_target_picks_strategies_by_kind_and_ignores_unregistered_names() -> None:
    target = FeedbackTarget(
        K8S,
        is_member=True,
        member_strategies=frozenset({"fingerprint", "manual"}),
        group_strategies=frozenset({"fingerprint", "pattern", "manual"}),
    )
    assert target.strategies(F.FEEDBACK_TYPE_WRONG_MEMBER) == ["fingerprint"]
    assert target.strategies(F.FEEDBACK_TYPE_GOOD_GROUP) == ["fingerprint", "pattern"]
    assert target.strategies(F.FEEDBACK_TYPE_MISSED_LINK) == []
    assert target.problem(F.FEEDBACK_TYPE_WRONG_MEMBER) is None
    assert target.problem(F.FEEDBACK_TYPE_MISSED_LINK) == "is already a member of the group"
    outsider = FeedbackTarget(K8S, False, frozenset(), frozenset())
    assert outsider.problem(F.FEEDBACK_TYPE_WRONG_MEMBER) == "is not a member of the group"
    assert outsider.problem(F.FEEDBACK_TYPE_MISSED_LINK) is None


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (correlation_pb2.SubmitFeedbackRequest(), ["group_id", "type"]),
        (
            correlation_pb2.SubmitFeedbackRequest(group_id="g", type=F.FEEDBACK_TYPE_WRONG_MEMBER),
            ["event_id"],
        ),
        (
            correlation_pb2.SubmitFeedbackRequest(
                group_id="g", type=F.FEEDBACK_TYPE_GOOD_GROUP, event_id="e"
            ),
            ["event_id"],
        ),
        (
            correlation_pb2.SubmitFeedbackRequest(
                group_id="g", type=F.FEEDBACK_TYPE_GOOD_GROUP, comment="x" * 5000
            ),
            ["comment"],
        ),
        (correlation_pb2.SubmitFeedbackRequest(group_id="g", type=9), ["type"]),  # type: ignore[arg-type]
        (
            correlation_pb2.SubmitFeedbackRequest(
                group_id="g", type=F.FEEDBACK_TYPE_MISSED_LINK, event_id="e"
            ),
            [],
        ),
    ],
)
def test_requests_are_validated_field_by_field(
    request_: correlation_pb2.SubmitFeedbackRequest, fields: list[str]
) -> None:
    violations = FieldViolations()
    validate_feedback(request_, violations)
    assert [field for field, _ in violations.items] == fields
