"""Conversions between Spanner's rows and their protobuf messages.

Enums are stored by their value name without the type prefix; durations as
nanoseconds; timestamps as UTC (SQLite hands them back naive, so naive means UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor

from corrmesh.spanner import models
from corrmesh.v1 import spanner_pb2


def enum_to_db(enum: EnumDescriptor, prefix: str, value: int) -> str:
    """``FAILURE_STRATEGY_BEST_EFFORT`` → ``BEST_EFFORT`` (values are validated first)."""
    return enum.values_by_number[value].name.removeprefix(prefix)


def enum_from_db(enum: EnumDescriptor, prefix: str, stored: str) -> int:
    """The inverse of :func:`enum_to_db`; an unknown name reads as UNSPECIFIED."""
    value = enum.values_by_name.get(prefix + stored)
    return value.number if value is not None else 0


def duration_to_ns(duration: duration_pb2.Duration) -> int:
    return int(duration.ToNanoseconds())


def duration_from_ns(nanoseconds: int) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(nanoseconds)
    return duration


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp


_FAILURE = (spanner_pb2.FailureStrategy.DESCRIPTOR, "FAILURE_STRATEGY_")
_DEDUP = (spanner_pb2.DeduplicationStrategy.DESCRIPTOR, "DEDUPLICATION_STRATEGY_")
_PROTOCOL = (spanner_pb2.SourceProtocol.DESCRIPTOR, "SOURCE_PROTOCOL_")
_OPERATION = (spanner_pb2.SpanningOperation.DESCRIPTOR, "SPANNING_OPERATION_")
_LEVEL = (spanner_pb2.QueryLevel.DESCRIPTOR, "QUERY_LEVEL_")
_OUTCOME = (spanner_pb2.OperationOutcome.DESCRIPTOR, "OPERATION_OUTCOME_")

_CONFIG_FLAGS = (
    "supports_dimse_scp",
    "supports_qido",
    "supports_wado",
    "supports_cmove",
    "supports_cget",
    "enabled",
)


def config_to_proto(row: models.SpannerConfig) -> spanner_pb2.SpannerConfig:
    config = spanner_pb2.SpannerConfig(
        config_id=row.id,
        name=row.name,
        description=row.description,
        max_concurrent_sources=row.max_concurrent_sources,
        query_timeout=duration_from_ns(row.query_timeout_ns),
        failure_strategy=enum_from_db(*_FAILURE, row.failure_strategy),  # type: ignore[arg-type]
        minimum_success_threshold=row.minimum_success_threshold,
        deduplication_strategy=enum_from_db(*_DEDUP, row.deduplication_strategy),  # type: ignore[arg-type]
        cache_ttl=duration_from_ns(row.cache_ttl_ns),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )
    for flag in _CONFIG_FLAGS:
        setattr(config, flag, getattr(row, flag))
    return config


def config_into_row(config: spanner_pb2.SpannerConfig, row: models.SpannerConfig) -> None:
    """Writes the mutable fields of a validated ``config`` into ``row``."""
    row.name = config.name
    row.description = config.description
    row.max_concurrent_sources = config.max_concurrent_sources
    row.query_timeout_ns = duration_to_ns(config.query_timeout)
    row.failure_strategy = enum_to_db(*_FAILURE, config.failure_strategy)
    row.minimum_success_threshold = config.minimum_success_threshold
    row.deduplication_strategy = enum_to_db(*_DEDUP, config.deduplication_strategy)
    row.cache_ttl_ns = duration_to_ns(config.cache_ttl)
    for flag in _CONFIG_FLAGS:
        setattr(row, flag, getattr(config, flag))


def node_to_proto(row: models.DicomNode) -> spanner_pb2.DicomNode:
    return spanner_pb2.DicomNode(
        node_id=row.id,
        name=row.name,
        ae_title=row.ae_title,
        host=row.host,
        port=row.port,
        dicomweb_base_url=row.dicomweb_base_url,
        tls=spanner_pb2.TlsSettings(
            enabled=row.tls_enabled,
            ca_cert_path=row.tls_ca_cert_path,
            cert_path=row.tls_cert_path,
            key_path=row.tls_key_path,
        ),
        enabled=row.enabled,
        description=row.description,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )


def node_into_row(node: spanner_pb2.DicomNode, row: models.DicomNode) -> None:
    """Writes the mutable fields of a validated ``node`` into ``row``."""
    row.name = node.name
    row.ae_title = node.ae_title
    row.host = node.host
    row.port = node.port
    row.dicomweb_base_url = node.dicomweb_base_url
    row.tls_enabled = node.tls.enabled
    row.tls_ca_cert_path = node.tls.ca_cert_path
    row.tls_cert_path = node.tls.cert_path
    row.tls_key_path = node.tls.key_path
    row.enabled = node.enabled
    row.description = node.description


def mapping_to_proto(row: models.SourceMapping) -> spanner_pb2.SourceMapping:
    return spanner_pb2.SourceMapping(
        mapping_id=row.id,
        config_id=row.config_id,
        node_id=row.node_id,
        priority=row.priority,
        timeout=duration_from_ns(row.timeout_ns),
        max_retries=row.max_retries,
        enabled=row.enabled,
        protocol=enum_from_db(*_PROTOCOL, row.protocol),  # type: ignore[arg-type]
    )


def mapping_into_row(mapping: spanner_pb2.SourceMapping, row: models.SourceMapping) -> None:
    """Writes the mutable fields of a validated ``mapping`` into ``row``."""
    row.priority = mapping.priority
    row.timeout_ns = duration_to_ns(mapping.timeout)
    row.max_retries = mapping.max_retries
    row.enabled = mapping.enabled
    row.protocol = enum_to_db(*_PROTOCOL, mapping.protocol)


def query_log_to_proto(row: models.QueryLog) -> spanner_pb2.QueryLog:
    log = spanner_pb2.QueryLog(
        log_id=row.id,
        config_id=row.config_id,
        operation=enum_from_db(*_OPERATION, row.operation),  # type: ignore[arg-type]
        requested_by=row.requested_by,
        level=enum_from_db(*_LEVEL, row.level),  # type: ignore[arg-type]
        query_keys={str(k): str(v) for k, v in row.query_keys.items()},
        matches_before_dedup=row.matches_before_dedup,
        matches_after_dedup=row.matches_after_dedup,
        outcome=enum_from_db(*_OUTCOME, row.outcome),  # type: ignore[arg-type]
        started_at=timestamp(row.started_at),
        elapsed=duration_from_ns(row.elapsed_ns),
        error=row.error,
    )
    for source in row.sources:
        json_format.ParseDict(source, log.sources.add())
    return log


def query_log_values(log: spanner_pb2.QueryLog) -> dict[str, Any]:
    """The column values of a new ``query_logs`` row for ``log`` (keys already redacted)."""
    return {
        "id": models.new_id(),
        "config_id": log.config_id,
        "operation": enum_to_db(*_OPERATION, log.operation),
        "requested_by": log.requested_by,
        "level": enum_to_db(*_LEVEL, log.level),
        "query_keys": dict(log.query_keys),
        "sources": [json_format.MessageToDict(source) for source in log.sources],
        "matches_before_dedup": log.matches_before_dedup,
        "matches_after_dedup": log.matches_after_dedup,
        "outcome": enum_to_db(*_OUTCOME, log.outcome),
        "started_at": log.started_at.ToDatetime(UTC),
        "elapsed_ns": duration_to_ns(log.elapsed),
        "error": log.error,
        "create_time": models.utc_now(),
    }
