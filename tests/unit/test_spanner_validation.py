"""Spanner's validation rules, one at a time, on otherwise valid resources."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from corrmesh.runtime.errors import FieldViolations
from corrmesh.spanner import validation
from corrmesh.v1 import spanner_pb2 as pb


def good_config() -> pb.SpannerConfig:
    return pb.SpannerConfig(
        name="Production",
        max_concurrent_sources=5,
        query_timeout=duration_pb2.Duration(seconds=30),
        failure_strategy=pb.FAILURE_STRATEGY_BEST_EFFORT,
        deduplication_strategy=pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE,
    )


def good_node() -> pb.DicomNode:
    return pb.DicomNode(name="Orthanc", ae_title="ORTHANC", host="pacs.local", port=4242)


def good_mapping() -> pb.SourceMapping:
    return pb.SourceMapping(
        config_id="c", node_id="n", priority=1, max_retries=2, protocol=pb.SOURCE_PROTOCOL_DIMSE
    )


def config_fields(config: pb.SpannerConfig) -> list[str]:
    violations = FieldViolations(prefix="config")
    validation.validate_config(config, violations)
    return [path for path, _ in violations.items]


def node_fields(node: pb.DicomNode) -> list[str]:
    violations = FieldViolations(prefix="node")
    validation.validate_node(node, violations)
    return [path for path, _ in violations.items]


def mapping_fields(mapping: pb.SourceMapping) -> list[str]:
    violations = FieldViolations(prefix="mapping")
    validation.validate_mapping(mapping, violations)
    return [path for path, _ in violations.items]


def test_valid_resources_have_no_violations() -> None:
    assert config_fields(good_config()) == []
    assert node_fields(good_node()) == []
    assert mapping_fields(good_mapping()) == []


# SpannerConfig


def test_create_defaults_fill_unset_fields() -> None:
    config = pb.SpannerConfig(name="x")
    validation.apply_config_defaults(config)
    assert config.max_concurrent_sources == 5
    assert config.query_timeout.ToSeconds() == 30
    assert config.failure_strategy == pb.FAILURE_STRATEGY_BEST_EFFORT
    assert config.deduplication_strategy == pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE
    assert config_fields(config) == []


def test_create_defaults_keep_given_values() -> None:
    config = pb.SpannerConfig(
        name="x",
        max_concurrent_sources=2,
        query_timeout=duration_pb2.Duration(seconds=7),
        failure_strategy=pb.FAILURE_STRATEGY_FAIL_FAST,
        deduplication_strategy=pb.DEDUPLICATION_STRATEGY_FIRST_WINS,
    )
    validation.apply_config_defaults(config)
    assert config.max_concurrent_sources == 2
    assert config.query_timeout.ToSeconds() == 7
    assert config.failure_strategy == pb.FAILURE_STRATEGY_FAIL_FAST
    assert config.deduplication_strategy == pb.DEDUPLICATION_STRATEGY_FIRST_WINS


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_config_name_required_and_bounded(name: str) -> None:
    config = good_config()
    config.name = name
    assert config_fields(config) == ["config.name"]


@pytest.mark.parametrize("value", [0, -1])
def test_max_concurrent_sources_at_least_one(value: int) -> None:
    config = good_config()
    config.max_concurrent_sources = value
    assert config_fields(config) == ["config.max_concurrent_sources"]


@pytest.mark.parametrize(
    "timeout",
    [
        duration_pb2.Duration(),
        duration_pb2.Duration(seconds=-1),
        duration_pb2.Duration(seconds=1, nanos=-5),
        duration_pb2.Duration(seconds=0, nanos=1_000_000_000),
        duration_pb2.Duration(seconds=validation.MAX_DURATION_SECONDS + 1),
    ],
)
def test_query_timeout_positive_and_valid(timeout: duration_pb2.Duration) -> None:
    config = good_config()
    config.query_timeout.CopyFrom(timeout)
    assert config_fields(config) == ["config.query_timeout"]


def test_query_timeout_sub_second_is_fine() -> None:
    config = good_config()
    config.query_timeout.CopyFrom(duration_pb2.Duration(nanos=500_000_000))
    assert config_fields(config) == []


@pytest.mark.parametrize("value", [pb.FAILURE_STRATEGY_UNSPECIFIED, 99])
def test_failure_strategy_must_be_known(value: int) -> None:
    config = good_config()
    config.failure_strategy = value  # type: ignore[assignment]
    assert config_fields(config) == ["config.failure_strategy"]


def test_minimum_threshold_needs_at_least_one() -> None:
    config = good_config()
    config.failure_strategy = pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD
    assert config_fields(config) == ["config.minimum_success_threshold"]
    config.minimum_success_threshold = 2
    assert config_fields(config) == []


def test_threshold_never_negative() -> None:
    config = good_config()
    config.minimum_success_threshold = -1
    assert config_fields(config) == ["config.minimum_success_threshold"]


@pytest.mark.parametrize("value", [pb.DEDUPLICATION_STRATEGY_UNSPECIFIED, 42])
def test_deduplication_strategy_must_be_known(value: int) -> None:
    config = good_config()
    config.deduplication_strategy = value  # type: ignore[assignment]
    assert config_fields(config) == ["config.deduplication_strategy"]


def test_cache_ttl_zero_allowed_negative_not() -> None:
    config = good_config()
    assert config_fields(config) == []
    config.cache_ttl.CopyFrom(duration_pb2.Duration(seconds=-3))
    assert config_fields(config) == ["config.cache_ttl"]


def test_every_bad_config_field_is_named() -> None:
    config = pb.SpannerConfig(cache_ttl=duration_pb2.Duration(seconds=-1))
    assert config_fields(config) == [
        "config.name",
        "config.max_concurrent_sources",
        "config.query_timeout",
        "config.failure_strategy",
        "config.deduplication_strategy",
        "config.cache_ttl",
    ]


# DicomNode


@pytest.mark.parametrize("name", ["", " "])
def test_node_name_required(name: str) -> None:
    node = good_node()
    node.name = name
    assert node_fields(node) == ["node.name"]


@pytest.mark.parametrize(
    "ae_title",
    ["", "A" * 17, "    ", "BAD\\AE", "TAB\tAE", "NEW\nLINE", "DEL\x7f", "ÄRZTE"],
)
def test_ae_title_rules(ae_title: str) -> None:
    node = good_node()
    node.ae_title = ae_title
    assert node_fields(node) == ["node.ae_title"]


@pytest.mark.parametrize("ae_title", ["A", "A" * 16, " PADDED ", "STORE-SCP_1", "a.b@c"])
def test_ae_title_accepts_the_dicom_repertoire(ae_title: str) -> None:
    assert validation.is_valid_ae_title(ae_title)


@pytest.mark.parametrize("host", ["", "  ", "two words", "h" * 256])
def test_host_rules(host: str) -> None:
    node = good_node()
    node.host = host
    assert node_fields(node) == ["node.host"]


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_port_range(port: int) -> None:
    node = good_node()
    node.port = port
    assert node_fields(node) == ["node.port"]


@pytest.mark.parametrize("port", [1, 104, 65535])
def test_port_bounds_accepted(port: int) -> None:
    node = good_node()
    node.port = port
    assert node_fields(node) == []


@pytest.mark.parametrize(
    "url",
    ["pacs:8042/dicom-web", "ftp://pacs/dicom-web", "http://", "https://:80/x", "http://h:x/"],
)
def test_dicomweb_base_url_must_be_http(url: str) -> None:
    node = good_node()
    node.dicomweb_base_url = url
    assert node_fields(node) == ["node.dicomweb_base_url"]


@pytest.mark.parametrize("url", ["", "http://pacs:8042/dicom-web", "https://pacs.example/wado"])
def test_dicomweb_base_url_accepted(url: str) -> None:
    node = good_node()
    node.dicomweb_base_url = url
    assert node_fields(node) == []


@pytest.mark.parametrize(
    ("cert", "key", "bad"),
    [("c.pem", "", "node.tls.key_path"), ("", "k.pem", "node.tls.cert_path")],
)
def test_tls_cert_and_key_go_together(cert: str, key: str, bad: str) -> None:
    node = good_node()
    node.tls.CopyFrom(pb.TlsSettings(enabled=True, cert_path=cert, key_path=key))
    assert node_fields(node) == [bad]


@pytest.mark.parametrize(
    "tls",
    [
        pb.TlsSettings(enabled=True),
        pb.TlsSettings(enabled=True, ca_cert_path="ca.pem"),
        pb.TlsSettings(enabled=True, ca_cert_path="ca.pem", cert_path="c", key_path="k"),
        # Disabled TLS keeps whatever paths were stored, unchecked.
        pb.TlsSettings(enabled=False, cert_path="c.pem"),
    ],
)
def test_tls_combinations_accepted(tls: pb.TlsSettings) -> None:
    node = good_node()
    node.tls.CopyFrom(tls)
    assert node_fields(node) == []


# SourceMapping


def test_mapping_references_required() -> None:
    mapping = good_mapping()
    mapping.config_id = ""
    mapping.node_id = ""
    assert mapping_fields(mapping) == ["mapping.config_id", "mapping.node_id"]


def test_mapping_priority_not_negative() -> None:
    mapping = good_mapping()
    mapping.priority = -1
    assert mapping_fields(mapping) == ["mapping.priority"]
    mapping.priority = 0
    assert mapping_fields(mapping) == []


def test_mapping_timeout_zero_inherits_negative_rejected() -> None:
    mapping = good_mapping()
    assert mapping_fields(mapping) == []
    mapping.timeout.CopyFrom(duration_pb2.Duration(seconds=-1))
    assert mapping_fields(mapping) == ["mapping.timeout"]


@pytest.mark.parametrize(("retries", "ok"), [(-1, False), (0, True), (10, True), (11, False)])
def test_mapping_max_retries_range(retries: int, ok: bool) -> None:
    mapping = good_mapping()
    mapping.max_retries = retries
    assert mapping_fields(mapping) == ([] if ok else ["mapping.max_retries"])


def test_mapping_protocol_defaults_to_dimse_on_create_only() -> None:
    mapping = good_mapping()
    mapping.protocol = pb.SOURCE_PROTOCOL_UNSPECIFIED
    assert mapping_fields(mapping) == ["mapping.protocol"]
    validation.apply_mapping_defaults(mapping)
    assert mapping.protocol == pb.SOURCE_PROTOCOL_DIMSE
    assert mapping_fields(mapping) == []


def test_messages_name_rules_not_values() -> None:
    node = good_node()
    node.name = ""
    node.ae_title = "SMITH^JOHN\\X"
    violations = FieldViolations(prefix="node")
    validation.validate_node(node, violations)
    assert all("SMITH" not in description for _, description in violations.items)
