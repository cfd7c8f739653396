"""Configuration updates: field masks, validation naming each field, latency sample."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from corrmesh.correlation.config import (
    apply_update,
    default_config,
    strategy_settings,
    with_defaults,
)
from corrmesh.correlation.latency import LatencyReservoir
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2


def update(config: correlation_pb2.CorrelationConfig, *paths: str):
    violations = FieldViolations()
    request = correlation_pb2.UpdateConfigRequest(
        config=config, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    result = apply_update(default_config(), request, violations)
    return result, [field for field, _ in violations.items]


def test_masked_update_changes_only_the_named_field() -> None:
    result, bad = update(
        correlation_pb2.CorrelationConfig(temporal_window=duration_pb2.Duration(seconds=60)),
        "temporal_window",
    )
    assert bad == []
    assert result.temporal_window.seconds == 60
    assert result.max_group_size == default_config().max_group_size
    assert result.min_correlation_score == 0.5


def test_nested_path_is_accepted() -> None:
    result, bad = update(
        correlation_pb2.CorrelationConfig(
            multi_camera=correlation_pb2.MultiCameraConfig(window=duration_pb2.Duration(seconds=5))
        ),
        "multi_camera.window",
    )
    assert bad == []
    assert result.multi_camera.window.seconds == 5
    assert result.multi_camera.require_same_controller


@pytest.mark.parametrize(
    ("config", "path", "field"),
    [
        (
            correlation_pb2.CorrelationConfig(temporal_window=duration_pb2.Duration(seconds=-1)),
            "temporal_window",
            "config.temporal_window",
        ),
        (correlation_pb2.CorrelationConfig(), "temporal_window", "config.temporal_window"),
        (
            correlation_pb2.CorrelationConfig(min_correlation_score=1.5),
            "min_correlation_score",
            "config.min_correlation_score",
        ),
        (
            correlation_pb2.CorrelationConfig(merge_threshold=-0.1),
            "merge_threshold",
            "config.merge_threshold",
        ),
        (correlation_pb2.CorrelationConfig(), "max_group_size", "config.max_group_size"),
        (
            correlation_pb2.CorrelationConfig(allowed_lateness=duration_pb2.Duration(seconds=-5)),
            "allowed_lateness",
            "config.allowed_lateness",
        ),
        (
            correlation_pb2.CorrelationConfig(quiet_after=duration_pb2.Duration(seconds=-30)),
            "quiet_after",
            "config.quiet_after",
        ),
        (
            correlation_pb2.CorrelationConfig(merge_within=duration_pb2.Duration(nanos=-1)),
            "merge_within",
            "config.merge_within",
        ),
        (
            correlation_pb2.CorrelationConfig(
                strategies=[correlation_pb2.StrategyConfig(name="psychic", weight=0.5)]
            ),
            "strategies",
            "config.strategies[0].name",
        ),
        (
            correlation_pb2.CorrelationConfig(
                strategies=[correlation_pb2.StrategyConfig(name="fingerprint", weight=1.2)]
            ),
            "strategies",
            "config.strategies[0].weight",
        ),
        (
            correlation_pb2.CorrelationConfig(
                strategies=[correlation_pb2.StrategyConfig(name="fingerprint", threshold=-1)]
            ),
            "strategies",
            "config.strategies[0].threshold",
        ),
    ],
)
def test_bad_values_are_named(
    config: correlation_pb2.CorrelationConfig, path: str, field: str
) -> None:
    _result, bad = update(config, path)
    assert bad == [field]


def test_unknown_mask_path_is_named() -> None:
    _result, bad = update(correlation_pb2.CorrelationConfig(), "temporal_window", "colour")
    assert bad == ["update_mask.paths[1]"]
    _result, bad = update(correlation_pb2.CorrelationConfig(), "strategies.name")
    assert bad == ["update_mask.paths[0]"]


def test_empty_mask_replaces_everything_and_must_be_complete() -> None:
    full = default_config()
    full.max_group_size = 7
    result, bad = update(full)
    assert bad == []
    assert result.max_group_size == 7
    _result, bad = update(correlation_pb2.CorrelationConfig(enabled=True))
    assert "config.temporal_window" in bad and "config.max_group_size" in bad


def test_missing_config_is_named() -> None:
    violations = FieldViolations()
    apply_update(default_config(), correlation_pb2.UpdateConfigRequest(), violations)
    assert [f for f, _ in violations.items] == ["config"]


def test_domain_entry_overrides_the_general_one() -> None:
    config = default_config()
    config.strategies.append(
        correlation_pb2.StrategyConfig(
            name="fingerprint", domain=event_pb2.DOMAIN_DICOM, enabled=False
        )
    )
    assert not strategy_settings(config, "fingerprint", event_pb2.DOMAIN_DICOM).enabled
    assert strategy_settings(config, "fingerprint", event_pb2.DOMAIN_KUBERNETES).enabled


def test_latency_reservoir_is_bounded_and_ranks() -> None:
    reservoir = LatencyReservoir(capacity=100, seed=1)
    assert reservoir.percentile(0.5) == 0.0
    for value in range(1, 10_001):
        reservoir.add(value / 1000)
    assert len(reservoir._samples) == 100
    assert reservoir.count == 10_000
    assert 2.0 < reservoir.percentile(0.5) < 8.0
    assert reservoir.percentile(0.99) >= reservoir.percentile(0.5)


def test_a_config_from_before_the_placement_rules_gets_their_defaults() -> None:
    """A stored configuration, or a whole one an older client sends, lacks
    quiet_after and merge_within: it gets the defaults, not 0 (off)."""
    older = default_config()
    older.ClearField("quiet_after")
    older.ClearField("merge_within")
    completed = with_defaults(older)
    assert completed.quiet_after == default_config().quiet_after
    assert completed.merge_within == default_config().merge_within
    # Set to 0 on purpose, a rule stays off.
    chosen = default_config()
    chosen.quiet_after.CopyFrom(duration_pb2.Duration())
    assert with_defaults(chosen).quiet_after.seconds == 0
