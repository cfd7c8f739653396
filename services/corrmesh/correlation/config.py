"""The engine's configuration: defaults, validation and partial updates.

Defaults follow incident-correlation-engine.md (window 300 s, minimum score
0.5, groups of at most 100, merge above 0.8, pattern similarity 0.7) and
multi-camera-correlation.md (10 s, same controller). DICOM alerts: stuck
after 10 min without a step while instances are in flight (done once
STORED), and an error rate of 50% with at least 5 failures of one stage from
one calling AE within 5 min. Strategy defaults:

* ``fingerprint``, ``topology``, ``pattern``, ``combined`` and
  ``multi_camera`` on, weight 1; ``combined`` from a score of 0.65, so that
  "same source at the same time" alone does not join;
* ``temporal`` and ``source`` off on their own: alone they join everything
  close in time, or everything one monitoring system says; ``combined`` uses
  their signals;
* camera detections (DOMAIN_CAMERA) are correlated by ``multi_camera`` only:
  "person detected" twice on one camera is not two views of one event.

Validation names each bad field under ``config.`` so INVALID_ARGUMENT tells
the caller exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from google.protobuf import duration_pb2
from google.protobuf.descriptor import Descriptor

from corrmesh.correlation.strategies import strategy_names
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2, event_pb2

DEFAULT_WINDOW_SECONDS = 300
DEFAULT_LATENESS_SECONDS = 60
#: Raw events, not deduplicated incidents: one Kubernetes incident brings
#: hundreds of Events (313 in the largest of k8s-boutique-s1), and a cap
#: below that splits it. Quiet groups and onset-only merges bound chaining.
DEFAULT_MAX_GROUP_SIZE = 500
#: Within an incident events come densely (no gap over 60 s in the TVDiag
#: sets; in the Kubernetes sets what follows a longer gap is nearly always a
#: repeat); a pause of this long mostly means the next incident.
DEFAULT_QUIET_SECONDS = 30
#: The fragments of one onset (a partition's Pods, its callers) open groups
#: within a minute or two of each other.
DEFAULT_MERGE_WITHIN_SECONDS = 120
#: Strategies whose signal alone is too weak to join events (see above).
OFF_ALONE = frozenset({"temporal", "source"})
#: ``combined`` from 0.65: closeness in time plus one shared source scores at
#: most 0.6, so it needs a third signal (similar text, the same fingerprint).
DEFAULT_THRESHOLDS = {"combined": 0.65}
_UNIT_FIELDS = (
    "min_correlation_score",
    "merge_threshold",
    "pattern_similarity_threshold",
    "min_score_to_activate",
)
_NON_NEGATIVE_DURATIONS = (
    "stabilize_after",
    "archive_after",
    "allowed_lateness",
    "quiet_after",
    "merge_within",
)
#: Message fields of CorrelationConfig that stored configurations may lack.
ADDED_SECTIONS: tuple[Literal["dicom_alerts", "quiet_after", "merge_within"], ...] = (
    "dicom_alerts",
    "quiet_after",
    "merge_within",
)
#: Stages an instance can be done at (UNSPECIFIED reads as STORED).
_COMPLETE_AT = (
    event_pb2.PROCESSING_STAGE_UNSPECIFIED,
    event_pb2.PROCESSING_STAGE_STORED,
    event_pb2.PROCESSING_STAGE_FORWARDED,
)


def default_config() -> correlation_pb2.CorrelationConfig:
    """The configuration a fresh database starts with."""
    return correlation_pb2.CorrelationConfig(
        enabled=True,
        temporal_window=duration_pb2.Duration(seconds=DEFAULT_WINDOW_SECONDS),
        min_correlation_score=0.5,
        max_group_size=DEFAULT_MAX_GROUP_SIZE,
        auto_merge_groups=True,
        merge_threshold=0.8,
        pattern_similarity_threshold=0.7,
        min_events_to_activate=2,
        min_score_to_activate=0.0,
        stabilize_after=duration_pb2.Duration(seconds=3600),
        archive_after=duration_pb2.Duration(seconds=7 * 86_400),
        allowed_lateness=duration_pb2.Duration(seconds=DEFAULT_LATENESS_SECONDS),
        quiet_after=duration_pb2.Duration(seconds=DEFAULT_QUIET_SECONDS),
        merge_within=duration_pb2.Duration(seconds=DEFAULT_MERGE_WITHIN_SECONDS),
        strategies=[
            *(
                correlation_pb2.StrategyConfig(
                    name=name,
                    enabled=name not in OFF_ALONE,
                    weight=1.0,
                    threshold=DEFAULT_THRESHOLDS.get(name, 0.0),
                )
                for name in strategy_names()
            ),
            *(
                correlation_pb2.StrategyConfig(
                    name=name, domain=event_pb2.DOMAIN_CAMERA, enabled=False, weight=1.0
                )
                for name in strategy_names()
                if name != "multi_camera"
            ),
        ],
        multi_camera=correlation_pb2.MultiCameraConfig(
            window=duration_pb2.Duration(seconds=10), require_same_controller=True
        ),
        dicom_alerts=correlation_pb2.DicomAlertConfig(
            stuck_after=duration_pb2.Duration(seconds=600),
            complete_at=event_pb2.PROCESSING_STAGE_STORED,
            error_rate_threshold=0.5,
            error_min_count=5,
            error_window=duration_pb2.Duration(seconds=300),
        ),
    )


def with_defaults(
    config: correlation_pb2.CorrelationConfig,
) -> correlation_pb2.CorrelationConfig:
    """``config`` with the sections added after configurations were first stored
    (:data:`ADDED_SECTIONS`) taken from :func:`default_config` when it lacks them:
    a stored configuration, or a whole one an older client sends, keeps the defaults."""
    defaults = default_config()
    for name in ADDED_SECTIONS:
        if not config.HasField(name):
            getattr(config, name).CopyFrom(getattr(defaults, name))
    return config


def duration_us(value: duration_pb2.Duration) -> int:
    return value.seconds * 1_000_000 + value.nanos // 1000


def camera_classes(similar_types: dict[str, str] | Mapping[str, str]) -> dict[str, str]:
    """Detection type -> its class name, from ``{"person": "human,pedestrian"}``.

    Similar types form classes transitively; a class is named by its
    alphabetically first member, so every type of one class maps to one key.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for kind, similar in similar_types.items():
        for other in similar.split(","):
            a, b = root(kind.strip().lower()), root(other.strip().lower())
            if a and b and a != b:
                parent[max(a, b)] = min(a, b)
    return {name: root(name) for name in parent if name}


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """How one strategy counts for one domain."""

    enabled: bool = True
    weight: float = 1.0
    threshold: float = 0.0


def strategy_settings(
    config: correlation_pb2.CorrelationConfig, name: str, domain: int
) -> StrategySettings:
    """The entry for (name, domain), else (name, every domain), else enabled at weight 1."""
    general: StrategySettings | None = None
    for entry in config.strategies:
        if entry.name != name:
            continue
        settings = StrategySettings(entry.enabled, entry.weight, entry.threshold)
        if entry.domain == domain and domain != event_pb2.DOMAIN_UNSPECIFIED:
            return settings
        if entry.domain == event_pb2.DOMAIN_UNSPECIFIED:
            general = settings
    return general or StrategySettings()


def _check_duration(
    value: duration_pb2.Duration, path: str, violations: FieldViolations, positive: bool
) -> None:
    if not -999_999_999 <= value.nanos <= 999_999_999 or (value.seconds * value.nanos < 0):
        violations.add(path, "is not a valid duration")
        return
    total = duration_us(value)
    if positive and total <= 0:
        violations.add(path, "must be positive")
    elif total < 0:
        violations.add(path, "must not be negative")


def validate_config(config: correlation_pb2.CorrelationConfig, violations: FieldViolations) -> None:
    """Adds a violation (under ``violations``' prefix) for each bad field."""
    _check_duration(config.temporal_window, "temporal_window", violations, positive=True)
    for name in _NON_NEGATIVE_DURATIONS:
        _check_duration(getattr(config, name), name, violations, positive=False)
    _check_duration(config.multi_camera.window, "multi_camera.window", violations, positive=True)
    for name in _UNIT_FIELDS:
        if not 0.0 <= getattr(config, name) <= 1.0:
            violations.add(name, "must be between 0 and 1")
    if config.max_group_size < 1:
        violations.add("max_group_size", "must be at least 1")
    if config.min_events_to_activate < 0:
        violations.add("min_events_to_activate", "must not be negative")
    _validate_dicom_alerts(config.dicom_alerts, violations.nested("dicom_alerts"))
    known = set(strategy_names())
    seen: set[tuple[str, int]] = set()
    for index, entry in enumerate(config.strategies):
        path = f"strategies[{index}]"
        if entry.name not in known:
            violations.add(f"{path}.name", f"unknown strategy; known: {', '.join(sorted(known))}")
        if entry.domain not in event_pb2.Domain.values():
            violations.add(f"{path}.domain", "unknown domain")
        if (entry.name, entry.domain) in seen:
            violations.add(path, "repeats a strategy and domain given before")
        seen.add((entry.name, entry.domain))
        for name in ("weight", "threshold"):
            if not 0.0 <= getattr(entry, name) <= 1.0:
                violations.add(f"{path}.{name}", "must be between 0 and 1")


def _validate_dicom_alerts(
    alerts: correlation_pb2.DicomAlertConfig, violations: FieldViolations
) -> None:
    _check_duration(alerts.stuck_after, "stuck_after", violations, positive=False)
    _check_duration(
        alerts.error_window,
        "error_window",
        violations,
        positive=alerts.error_rate_threshold > 0,
    )
    if alerts.complete_at not in _COMPLETE_AT:
        violations.add(
            "complete_at", "must be PROCESSING_STAGE_STORED or PROCESSING_STAGE_FORWARDED"
        )
    if not 0.0 <= alerts.error_rate_threshold <= 1.0:
        violations.add("error_rate_threshold", "must be between 0 and 1")
    if alerts.error_min_count < 0:
        violations.add("error_min_count", "must not be negative")


def apply_update(
    current: correlation_pb2.CorrelationConfig,
    request: correlation_pb2.UpdateConfigRequest,
    violations: FieldViolations,
) -> correlation_pb2.CorrelationConfig:
    """The configuration after ``request``; violations name bad mask paths and values.

    An empty mask replaces the whole configuration (the proto's "all when
    empty"); otherwise only the named fields change, messages and lists as a
    whole.
    """
    if not request.HasField("config"):
        violations.add("config", "is required")
        return current
    descriptor = correlation_pb2.CorrelationConfig.DESCRIPTOR
    for index, path in enumerate(request.update_mask.paths):
        if not _valid_path(descriptor, path):
            violations.add(f"update_mask.paths[{index}]", "is not a field of CorrelationConfig")
    if violations:
        return current
    updated = correlation_pb2.CorrelationConfig()
    if request.update_mask.paths:
        updated.CopyFrom(current)
        request.update_mask.MergeMessage(
            request.config, updated, replace_message_field=True, replace_repeated_field=True
        )
    else:
        updated.CopyFrom(request.config)
        with_defaults(updated)
    validate_config(updated, violations.nested("config"))
    return updated


def _valid_path(descriptor: Descriptor, path: str) -> bool:
    """True when ``path`` names a field, through singular messages only (AIP-161)."""
    current: Descriptor | None = descriptor
    parts = path.split(".")
    for position, part in enumerate(parts):
        field = current.fields_by_name.get(part) if current is not None else None
        if field is None:
            return False
        is_last = position == len(parts) - 1
        if not is_last and (field.is_repeated or field.message_type is None):
            return False
        current = field.message_type
    return True
