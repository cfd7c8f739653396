"""Request checks shared by the RPCs and the dependencies file.

Each check adds violations naming the field path (``dependencies[2].from.name``)
and never echoes values, so an error message cannot leak what a caller sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from corrmesh.runtime.errors import FieldViolations
from corrmesh.topology.keys import key_of
from corrmesh.topology.models import DESCRIPTION_LENGTH, NAME_LENGTH
from corrmesh.v1 import event_pb2, topology_pb2

MAX_PAIRS = 10_000
MAX_DEPENDENCIES = 10_000
#: Bound on depth-like request fields (ListNeighbors depth, FindPath/GetImpact max_depth).
MAX_DEPTH = 32
DEFAULT_PATH_DEPTH = 8
DEFAULT_IMPACT_DEPTH = 8

_REF_FIELDS = ("cluster", "kind", "namespace", "name", "uid", "api_version")


def check_ref(
    ref: event_pb2.ResourceRef, present: bool, field: str, violations: FieldViolations
) -> None:
    """A ref must name a resource: a uid, or a kind and a name."""
    if not present:
        violations.add(field, "is required")
        return
    for name in _REF_FIELDS:
        if len(getattr(ref, name)) > NAME_LENGTH:
            violations.add(f"{field}.{name}", f"must be at most {NAME_LENGTH} characters")
    if ref.uid:
        return
    if not ref.kind:
        violations.add(f"{field}.kind", "is required unless uid is set")
    if not ref.name:
        violations.add(f"{field}.name", "is required unless uid is set")


def check_depth(value: int, field: str, violations: FieldViolations) -> None:
    if value < 0:
        violations.add(field, "must not be negative")
    elif value > MAX_DEPTH:
        violations.add(field, f"must be at most {MAX_DEPTH}")


def check_edge_types(values: Sequence[int], field: str, violations: FieldViolations) -> None:
    known = set(topology_pb2.EdgeType.values())
    for index, value in enumerate(values):
        if value == topology_pb2.EDGE_TYPE_UNSPECIFIED or value not in known:
            violations.add(f"{field}[{index}]", "must be a known edge type")


def check_dependencies(
    dependencies: Sequence[topology_pb2.Dependency], violations: FieldViolations
) -> None:
    """Every dependency names two different resources; descriptions are bounded."""
    if not dependencies:
        violations.add("dependencies", "must contain at least one dependency")
        return
    if len(dependencies) > MAX_DEPENDENCIES:
        violations.add("dependencies", f"must contain at most {MAX_DEPENDENCIES} dependencies")
        return
    for index, dep in enumerate(dependencies):
        field = f"dependencies[{index}]"
        before = len(violations.items)
        check_ref(getattr(dep, "from"), dep.HasField("from"), f"{field}.from", violations)
        check_ref(dep.to, dep.HasField("to"), f"{field}.to", violations)
        if len(violations.items) == before and key_of(getattr(dep, "from")) == key_of(dep.to):
            violations.add(f"{field}.to", "must differ from `from`: no self-dependency")
        if len(dep.description) > DESCRIPTION_LENGTH:
            violations.add(
                f"{field}.description", f"must be at most {DESCRIPTION_LENGTH} characters"
            )
