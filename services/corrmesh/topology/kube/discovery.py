"""Which version of each kind a cluster serves, asked of the cluster itself.

``/api`` and ``/apis`` list the served group versions; each candidate group
version's resource list then says whether it has the resource with the
``list`` and ``watch`` verbs. A group version that fails to answer (an
aggregated API that is down) only makes its kinds unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corrmesh.topology.kube.client import READ_TIMEOUT_SECONDS, ClusterClient, KubeApiError
from corrmesh.topology.kube.kinds import KINDS, KindSpec, ServedKind

GroupVersion = tuple[str, str]


@dataclass
class Discovery:
    """The outcome: a served version per kind, or why a kind is not synced."""

    served: dict[str, ServedKind] = field(default_factory=dict)
    #: kind -> reason ("not served", "replaced by EndpointSlice", ...).
    skipped: dict[str, str] = field(default_factory=dict)


def served_group_versions(client: ClusterClient, timeout: float) -> set[GroupVersion]:
    """Every (group, version) the API server serves; "" is the core group."""
    found: set[GroupVersion] = set()
    core = client.get_json("/api", read_timeout=timeout)
    for version in core.get("versions") or ():
        found.add(("", str(version)))
    groups = client.get_json("/apis", read_timeout=timeout)
    for group in groups.get("groups") or ():
        name = str(group.get("name", ""))
        for entry in group.get("versions") or ():
            found.add((name, str(entry.get("version", ""))))
    return found


def _resources(
    client: ClusterClient, group: str, version: str, timeout: float
) -> dict[str, dict[str, Any]]:
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    document = client.get_json(path, read_timeout=timeout)
    return {
        str(r.get("name")): r
        for r in document.get("resources") or ()
        if isinstance(r, dict) and "/" not in str(r.get("name", ""))
    }


def discover(
    client: ClusterClient,
    kinds: tuple[KindSpec, ...] = KINDS,
    timeout: float = READ_TIMEOUT_SECONDS,
) -> Discovery:
    """Chooses the version to sync for each of ``kinds``.

    Raises KubeUnreachableError when the server does not answer at all.
    """
    served = served_group_versions(client, timeout)
    resource_lists: dict[GroupVersion, dict[str, dict[str, Any]] | None] = {}
    result = Discovery()
    for spec in kinds:
        for version in spec.versions:
            group_version = (spec.group, version)
            if group_version not in served:
                continue
            if group_version not in resource_lists:
                try:
                    resource_lists[group_version] = _resources(client, spec.group, version, timeout)
                except KubeApiError:
                    resource_lists[group_version] = None
            resources = resource_lists[group_version]
            if resources is None or spec.resource not in resources:
                continue
            verbs = set(resources[spec.resource].get("verbs") or ())
            if {"list", "watch"} <= verbs:
                result.served[spec.kind] = ServedKind(spec, version)
                break
        else:
            wanted = ", ".join(f"{spec.group}/{v}" if spec.group else v for v in spec.versions)
            result.skipped[spec.kind] = f"not served (looked for {wanted})"
    for spec in kinds:
        replaced_by = [k for k in spec.only_without if k in result.served]
        if spec.kind in result.served and replaced_by:
            del result.served[spec.kind]
            result.skipped[spec.kind] = f"replaced by {', '.join(replaced_by)}"
    return result
