"""FieldMask handling for the Update RPCs (AIP-134).

A mask names the fields an update changes; the others keep their stored
values. An empty mask replaces every mutable field. Unknown paths, and paths
to output-only or immutable fields, are rejected as a violation of
``update_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from corrmesh.runtime.errors import FieldViolations

MASK_FIELD = "update_mask"


@dataclass(frozen=True)
class MaskRules:
    """Which paths of one resource an update may name."""

    resource: str
    #: The resource's own id: required in an update, never updatable.
    id_field: str
    #: Top-level fields an update may replace; also what an empty mask means.
    mutable: tuple[str, ...]
    #: Output-only or immutable fields (ids, timestamps).
    immutable: frozenset[str]
    #: Sub-fields of mutable messages that may be named on their own ("tls.enabled").
    nested: frozenset[str] = frozenset()


CONFIG_MASK = MaskRules(
    resource="SpannerConfig",
    id_field="config_id",
    mutable=(
        "name",
        "description",
        "max_concurrent_sources",
        "query_timeout",
        "failure_strategy",
        "minimum_success_threshold",
        "deduplication_strategy",
        "supports_dimse_scp",
        "supports_qido",
        "supports_wado",
        "supports_cmove",
        "supports_cget",
        "enabled",
        "cache_ttl",
    ),
    immutable=frozenset({"config_id", "create_time", "update_time"}),
)
NODE_MASK = MaskRules(
    resource="DicomNode",
    id_field="node_id",
    mutable=(
        "name",
        "ae_title",
        "host",
        "port",
        "dicomweb_base_url",
        "tls",
        "enabled",
        "description",
    ),
    immutable=frozenset({"node_id", "create_time", "update_time"}),
    nested=frozenset({"tls.enabled", "tls.ca_cert_path", "tls.cert_path", "tls.key_path"}),
)
MAPPING_MASK = MaskRules(
    resource="SourceMapping",
    id_field="mapping_id",
    mutable=("priority", "timeout", "max_retries", "enabled", "protocol"),
    immutable=frozenset({"mapping_id", "config_id", "node_id"}),
)


def resolve_mask(
    mask: field_mask_pb2.FieldMask, rules: MaskRules, violations: FieldViolations
) -> list[str]:
    """The paths to apply: the mask's, or every mutable field for an empty mask.

    Bad paths are added to ``violations`` under ``update_mask``.
    """
    if not mask.paths:
        return list(rules.mutable)
    paths: list[str] = []
    for path in mask.paths:
        top = path.split(".", 1)[0]
        if top in rules.immutable:
            violations.add(MASK_FIELD, f"{path!r} is output only or immutable")
        elif path in rules.mutable or path in rules.nested:
            if path not in paths:
                paths.append(path)
        else:
            violations.add(MASK_FIELD, f"{path!r} is not an updatable field of {rules.resource}")
    return paths


def apply_mask(source: Message, destination: Message, paths: list[str]) -> None:
    """Copies the fields at ``paths`` from ``source`` into ``destination``.

    A masked field takes the request's value even when that value is unset:
    a named message is replaced as a whole (cleared when unset), and a named
    sub-field ("tls.key_path") is copied even when the request omits its
    parent. (``FieldMask.MergeMessage`` skips sub-paths under an unset parent,
    which would silently ignore a request to clear them.)
    """
    for path in paths:
        _copy_path(source, destination, path.split("."))


def _copy_path(source: Message, destination: Message, parts: list[str]) -> None:
    name, rest = parts[0], parts[1:]
    if rest:
        _copy_path(getattr(source, name), getattr(destination, name), rest)
        return
    field = source.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        target = getattr(destination, name)
        del target[:]
        target.extend(getattr(source, name))
    elif field.message_type is not None:
        if source.HasField(name):
            getattr(destination, name).CopyFrom(getattr(source, name))
        else:
            destination.ClearField(name)
    else:
        setattr(destination, name, getattr(source, name))
