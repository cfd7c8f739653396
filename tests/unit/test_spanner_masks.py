"""FieldMask resolution and application for Spanner's Update RPCs."""

from __future__ import annotations

from google.protobuf import duration_pb2, field_mask_pb2

from corrmesh.runtime.errors import FieldViolations
from corrmesh.spanner.masks import CONFIG_MASK, MAPPING_MASK, NODE_MASK, apply_mask, resolve_mask
from corrmesh.v1 import spanner_pb2 as pb


def resolve(paths: list[str], rules=CONFIG_MASK) -> tuple[list[str], list[tuple[str, str]]]:
    violations = FieldViolations()
    resolved = resolve_mask(field_mask_pb2.FieldMask(paths=paths), rules, violations)
    return resolved, violations.items


def test_empty_mask_means_every_mutable_field() -> None:
    paths, problems = resolve([])
    assert problems == []
    assert set(paths) == set(CONFIG_MASK.mutable)
    assert "config_id" not in paths and "create_time" not in paths


def test_named_paths_are_kept_once() -> None:
    assert resolve(["name", "enabled", "name"]) == (["name", "enabled"], [])


def test_immutable_and_unknown_paths_name_update_mask() -> None:
    paths, problems = resolve(["config_id", "create_time", "update_time.seconds", "bogus"])
    assert paths == []
    assert [field for field, _ in problems] == ["update_mask"] * 4
    assert "'bogus'" in problems[3][1]


def test_node_tls_subpaths_allowed_other_nested_paths_not() -> None:
    assert resolve(["tls.cert_path", "tls"], NODE_MASK) == (["tls.cert_path", "tls"], [])
    _, problems = resolve(["tls.nope", "port.value"], NODE_MASK)
    assert len(problems) == 2


def test_mapping_references_are_immutable() -> None:
    _, problems = resolve(["config_id", "node_id", "mapping_id"], MAPPING_MASK)
    assert [field for field, _ in problems] == ["update_mask"] * 3


def test_apply_mask_changes_only_named_fields() -> None:
    stored = pb.SpannerConfig(
        config_id="id",
        name="old",
        description="keep",
        query_timeout=duration_pb2.Duration(seconds=9),
    )
    request = pb.SpannerConfig(name="new", description="ignored")
    apply_mask(request, stored, ["name"])
    assert (stored.name, stored.description, stored.config_id) == ("new", "keep", "id")
    assert stored.query_timeout.seconds == 9


def test_apply_mask_clears_a_named_message_left_unset() -> None:
    stored = pb.SpannerConfig(cache_ttl=duration_pb2.Duration(seconds=60))
    apply_mask(pb.SpannerConfig(), stored, ["cache_ttl"])
    assert not stored.HasField("cache_ttl")


def test_apply_mask_tls_subfield_keeps_siblings() -> None:
    stored = pb.DicomNode(tls=pb.TlsSettings(enabled=True, ca_cert_path="ca", cert_path="c"))
    apply_mask(pb.DicomNode(tls=pb.TlsSettings(cert_path="new")), stored, ["tls.cert_path"])
    assert stored.tls == pb.TlsSettings(enabled=True, ca_cert_path="ca", cert_path="new")


def test_apply_mask_subfield_under_unset_parent_clears_it() -> None:
    stored = pb.DicomNode(tls=pb.TlsSettings(enabled=True, cert_path="c", key_path="k"))
    apply_mask(pb.DicomNode(), stored, ["tls.key_path"])
    assert stored.tls == pb.TlsSettings(enabled=True, cert_path="c")
