"""Rules for spanner configurations, DICOM nodes and source mappings.

Each ``validate_*`` function checks a complete resource (after create-time
defaults, or after an update's field mask has been applied) and adds one
violation per bad field to a :class:`FieldViolations`, whose prefix names the
request field (``config``, ``node``, ``mapping``). Messages name the rule,
never the offending value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from google.protobuf import duration_pb2
from google.protobuf.descriptor import EnumDescriptor

from corrmesh.runtime.errors import FieldViolations
from corrmesh.spanner import models
from corrmesh.v1 import spanner_pb2

DEFAULT_MAX_CONCURRENT_SOURCES = 5
DEFAULT_QUERY_TIMEOUT_SECONDS = 30
DEFAULT_FAILURE_STRATEGY = spanner_pb2.FAILURE_STRATEGY_BEST_EFFORT
DEFAULT_DEDUPLICATION_STRATEGY = spanner_pb2.DEDUPLICATION_STRATEGY_MOST_COMPLETE
DEFAULT_PROTOCOL = spanner_pb2.SOURCE_PROTOCOL_DIMSE
MAX_RETRIES = 10
MAX_PORT = 65535
# Durations are stored as int64 nanoseconds (good to ~292 years); a round
# limit far below that keeps every accepted value storable.
MAX_DURATION_SECONDS = 100 * 365 * 24 * 3600
_MAX_NANOS = 999_999_999


def apply_config_defaults(config: spanner_pb2.SpannerConfig) -> None:
    """Fills the fields a create request may leave unset.

    Only on create: max_concurrent_sources 0 becomes 5, an unset or zero
    query_timeout becomes 30 s, failure_strategy UNSPECIFIED becomes
    BEST_EFFORT and deduplication_strategy UNSPECIFIED becomes MOST_COMPLETE.
    An update must state these explicitly.
    """
    if config.max_concurrent_sources == 0:
        config.max_concurrent_sources = DEFAULT_MAX_CONCURRENT_SOURCES
    if _is_zero(config.query_timeout):
        config.query_timeout.CopyFrom(duration_pb2.Duration(seconds=DEFAULT_QUERY_TIMEOUT_SECONDS))
    if config.failure_strategy == spanner_pb2.FAILURE_STRATEGY_UNSPECIFIED:
        config.failure_strategy = DEFAULT_FAILURE_STRATEGY
    if config.deduplication_strategy == spanner_pb2.DEDUPLICATION_STRATEGY_UNSPECIFIED:
        config.deduplication_strategy = DEFAULT_DEDUPLICATION_STRATEGY


def apply_mapping_defaults(mapping: spanner_pb2.SourceMapping) -> None:
    """On create, protocol UNSPECIFIED means DIMSE (the classic C-FIND/C-MOVE path)."""
    if mapping.protocol == spanner_pb2.SOURCE_PROTOCOL_UNSPECIFIED:
        mapping.protocol = DEFAULT_PROTOCOL


def validate_config(config: spanner_pb2.SpannerConfig, violations: FieldViolations) -> None:
    """Checks a whole SpannerConfig; name uniqueness is the store's job."""
    _check_name(config.name, "name", violations)
    if config.max_concurrent_sources < 1:
        violations.add("max_concurrent_sources", "must be at least 1")
    _check_duration(config.query_timeout, "query_timeout", violations, positive=True)
    _check_enum(
        spanner_pb2.FailureStrategy.DESCRIPTOR,
        config.failure_strategy,
        "failure_strategy",
        violations,
    )
    if config.failure_strategy == spanner_pb2.FAILURE_STRATEGY_MINIMUM_THRESHOLD:
        if config.minimum_success_threshold < 1:
            violations.add("minimum_success_threshold", "must be at least 1 with MINIMUM_THRESHOLD")
    elif config.minimum_success_threshold < 0:
        violations.add("minimum_success_threshold", "must not be negative")
    _check_enum(
        spanner_pb2.DeduplicationStrategy.DESCRIPTOR,
        config.deduplication_strategy,
        "deduplication_strategy",
        violations,
    )
    _check_duration(config.cache_ttl, "cache_ttl", violations, positive=False)


def validate_node(node: spanner_pb2.DicomNode, violations: FieldViolations) -> None:
    """Checks a whole DicomNode."""
    _check_name(node.name, "name", violations)
    _check_ae_title(node.ae_title, "ae_title", violations)
    if not node.host.strip():
        violations.add("host", "is required")
    elif len(node.host) > models.HOST_LENGTH or any(c.isspace() for c in node.host):
        violations.add(
            "host", f"must be a host name or address without spaces, at most {models.HOST_LENGTH}"
        )
    if not 1 <= node.port <= MAX_PORT:
        violations.add("port", f"must be between 1 and {MAX_PORT}")
    if node.dicomweb_base_url and not is_http_url(node.dicomweb_base_url):
        violations.add("dicomweb_base_url", "must be empty or an http(s) URL with a host")
    elif len(node.dicomweb_base_url) > models.URL_LENGTH:
        violations.add("dicomweb_base_url", f"must be at most {models.URL_LENGTH} characters")
    _check_tls(node.tls, violations.nested("tls"))


def validate_mapping(mapping: spanner_pb2.SourceMapping, violations: FieldViolations) -> None:
    """Checks a whole SourceMapping; that its config and node exist is the store's job."""
    if not mapping.config_id:
        violations.add("config_id", "is required")
    if not mapping.node_id:
        violations.add("node_id", "is required")
    if mapping.priority < 0:
        violations.add("priority", "must not be negative")
    _check_duration(mapping.timeout, "timeout", violations, positive=False)
    if not 0 <= mapping.max_retries <= MAX_RETRIES:
        violations.add("max_retries", f"must be between 0 and {MAX_RETRIES}")
    _check_enum(spanner_pb2.SourceProtocol.DESCRIPTOR, mapping.protocol, "protocol", violations)


def is_valid_ae_title(value: str) -> bool:
    """DICOM AE VR: 1-16 characters of the default repertoire (printable ASCII)
    without backslash, and not only spaces."""
    if not 1 <= len(value) <= models.AE_TITLE_LENGTH or not value.strip(" "):
        return False
    return all(" " <= c <= "~" and c != "\\" for c in value)


def is_http_url(value: str) -> bool:
    """True for an absolute http:// or https:// URL with a host."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_name(value: str, path: str, violations: FieldViolations) -> None:
    if not value.strip():
        violations.add(path, "is required")
    elif len(value) > models.NAME_LENGTH:
        violations.add(path, f"must be at most {models.NAME_LENGTH} characters")


def _check_ae_title(value: str, path: str, violations: FieldViolations) -> None:
    if not value:
        violations.add(path, "is required")
    elif not is_valid_ae_title(value):
        violations.add(
            path,
            "must be 1-16 printable ASCII characters, no backslash, not only spaces",
        )


def _check_tls(tls: spanner_pb2.TlsSettings, violations: FieldViolations) -> None:
    for field in ("ca_cert_path", "cert_path", "key_path"):
        if len(getattr(tls, field)) > models.PATH_LENGTH:
            violations.add(field, f"must be at most {models.PATH_LENGTH} characters")
    if tls.enabled and bool(tls.cert_path) != bool(tls.key_path):
        missing = "key_path" if tls.cert_path else "cert_path"
        violations.add(missing, "cert_path and key_path go together: set both or neither")


def _check_enum(enum: EnumDescriptor, value: int, path: str, violations: FieldViolations) -> None:
    if value == 0:
        violations.add(path, "must be set")
    elif value not in enum.values_by_number:
        violations.add(path, "is not a known value")


def _is_zero(duration: duration_pb2.Duration) -> bool:
    return duration.seconds == 0 and duration.nanos == 0


def _check_duration(
    duration: duration_pb2.Duration, path: str, violations: FieldViolations, *, positive: bool
) -> None:
    seconds, nanos = duration.seconds, duration.nanos
    if abs(nanos) > _MAX_NANOS or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        violations.add(path, "is not a valid duration")
    elif seconds < 0 or nanos < 0:
        violations.add(path, "must not be negative")
    elif positive and seconds == 0 and nanos == 0:
        violations.add(path, "must be greater than zero")
    elif seconds > MAX_DURATION_SECONDS:
        violations.add(path, "must be at most 100 years")
