"""Protobuf messages built from graph keys and edges."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from corrmesh.topology.graph import EdgeKey, TopologyGraph
from corrmesh.v1 import topology_pb2


def edge_message(graph: TopologyGraph, edge: EdgeKey) -> topology_pb2.Edge:
    """The Edge for a stored (from, to, type); both ends must be in the graph."""
    source, target, edge_type = edge
    message = topology_pb2.Edge(type=edge_type)  # type: ignore[arg-type]
    getattr(message, "from").CopyFrom(graph.resources[source].ref)
    message.to.CopyFrom(graph.resources[target].ref)
    return message


def now_timestamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def resource_change(
    change_type: int, resource: topology_pb2.Resource, changed_at: timestamp_pb2.Timestamp
) -> topology_pb2.TopologyChange:
    """A RESOURCE_UPSERTED or RESOURCE_DELETED change (sequence assigned by the store)."""
    return topology_pb2.TopologyChange(
        type=change_type,  # type: ignore[arg-type]
        resource=resource,
        changed_at=changed_at,
        cluster=resource.ref.cluster,
    )


def edge_change(
    change_type: int, edge: topology_pb2.Edge, changed_at: timestamp_pb2.Timestamp
) -> topology_pb2.TopologyChange:
    """An EDGE_ADDED or EDGE_REMOVED change, filed under the cluster of its `from` end."""
    return topology_pb2.TopologyChange(
        type=change_type,  # type: ignore[arg-type]
        edge=edge,
        changed_at=changed_at,
        cluster=getattr(edge, "from").cluster,
    )


def change_matches(
    change: topology_pb2.TopologyChange, clusters: set[str], kinds: set[str]
) -> bool:
    """Whether a WatchTopology subscriber filtering on ``clusters``/``kinds`` wants it.

    An edge matches a kind filter when either end has one of the kinds; a
    RESYNCED change concerns a whole cluster, so only the cluster filter applies.
    """
    if clusters and change.cluster not in clusters:
        return False
    if not kinds or change.type == topology_pb2.CHANGE_TYPE_RESYNCED:
        return True
    if change.HasField("resource"):
        return change.resource.ref.kind in kinds
    if change.HasField("edge"):
        edge = change.edge
        return getattr(edge, "from").kind in kinds or edge.to.kind in kinds
    return False
