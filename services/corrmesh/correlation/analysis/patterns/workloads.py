"""Which workload a Pod or ReplicaSet belongs to, read off its generated name.

Deployments name their ReplicaSets ``<deployment>-<hash>`` and those name their
Pods ``<replicaset>-<suffix>``; StatefulSets name Pods ``<set>-<ordinal>``.
Topology knows owners exactly when it has them; the name is the fallback that
also works for sources without a topology.
"""

from __future__ import annotations

import re

from corrmesh.v1 import event_pb2

_HASH = re.compile(r"^[a-z0-9]{4,10}$")
_ORDINAL = re.compile(r"^\d+$")


def workload_name(ref: event_pb2.ResourceRef) -> str:
    """The workload ``ref`` belongs to: ``cartservice`` for ``cartservice-6hs5v4rw9-2x49k``."""
    name = ref.name
    kind = ref.kind.lower()
    parts = name.split("-")
    if kind == "pod" and len(parts) >= 3 and _HASH.match(parts[-1]) and _HASH.match(parts[-2]):
        return "-".join(parts[:-2])
    if (
        kind in ("pod", "replicaset")
        and len(parts) >= 2
        and (_ORDINAL.match(parts[-1]) or (kind == "replicaset" and _HASH.match(parts[-1])))
    ):
        return "-".join(parts[:-1])
    return name
