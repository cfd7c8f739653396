"""The declared-dependencies YAML file (``settings.dependencies_file``).

Format::

    dependencies:
      - from: {kind: Service, namespace: shop, name: frontend}
        to: {kind: Service, namespace: shop, name: api}
        description: HTTP

A ref takes ``cluster``, ``kind``, ``namespace``, ``name``, ``uid`` and
``api_version`` (or ``apiVersion``); all are strings. The file is loaded at
start and upserted like UpsertDependencies: it adds and updates, it never
removes what the API declared. Anything malformed stops the start with an
error naming the file and the entry (``dependencies[1].to.name: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from corrmesh.runtime.errors import FieldViolations
from corrmesh.topology.validation import check_dependencies
from corrmesh.v1 import event_pb2, topology_pb2

_REF_KEYS = {
    "cluster": "cluster",
    "kind": "kind",
    "namespace": "namespace",
    "name": "name",
    "uid": "uid",
    "api_version": "api_version",
    "apiVersion": "api_version",
}
_ENTRY_KEYS = {"from", "to", "description"}


class DependenciesFileError(ValueError):
    """The dependencies file cannot be read or has a malformed entry."""


def load_dependencies_file(path: str | Path) -> list[topology_pb2.Dependency]:
    """The dependencies declared in ``path``; raises DependenciesFileError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DependenciesFileError(f"dependencies file {path}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DependenciesFileError(f"dependencies file {path}: not valid YAML{where}") from exc
    violations = FieldViolations()
    dependencies = parse_dependencies(document, violations)
    if dependencies and not violations:
        check_dependencies(dependencies, violations)
    if violations:
        details = "; ".join(f"{field}: {description}" for field, description in violations.items)
        raise DependenciesFileError(f"dependencies file {path}: {details}")
    return dependencies


def parse_dependencies(document: Any, violations: FieldViolations) -> list[topology_pb2.Dependency]:
    """Dependency messages from a parsed document; shape errors become violations."""
    if document is None:
        return []
    if not isinstance(document, dict) or set(document) - {"dependencies"}:
        violations.add("dependencies", "the file must be a mapping holding only this list")
        return []
    entries = document.get("dependencies") or []
    if not isinstance(entries, list):
        violations.add("dependencies", "must be a list")
        return []
    dependencies = []
    for index, entry in enumerate(entries):
        field = f"dependencies[{index}]"
        if not isinstance(entry, dict):
            violations.add(field, "must be a mapping with `from`, `to` and `description`")
            continue
        for unknown in sorted(set(map(str, entry)) - _ENTRY_KEYS):
            violations.add(f"{field}.{unknown}", "is not a known field")
        dependency = topology_pb2.Dependency()
        for end in ("from", "to"):
            if end not in entry:
                violations.add(f"{field}.{end}", "is required")
                continue
            ref = _parse_ref(entry[end], f"{field}.{end}", violations)
            getattr(dependency, end).CopyFrom(ref)
        description = entry.get("description", "")
        if not isinstance(description, str):
            violations.add(f"{field}.description", "must be a string")
        else:
            dependency.description = description
        dependencies.append(dependency)
    return dependencies


def _parse_ref(value: Any, field: str, violations: FieldViolations) -> event_pb2.ResourceRef:
    ref = event_pb2.ResourceRef()
    if not isinstance(value, dict):
        violations.add(field, "must be a mapping such as {kind: Service, name: api}")
        return ref
    for key, item in value.items():
        name = _REF_KEYS.get(str(key))
        if name is None:
            violations.add(f"{field}.{key}", "is not a known field")
        elif not isinstance(item, str):
            violations.add(f"{field}.{key}", "must be a string")
        else:
            setattr(ref, name, item)
    return ref
