"""Resource identity and wording, as the correlation engine needs them.

Two refs name the same resource when their uids are equal or, without uids,
when cluster, kind, namespace and name are equal (event.proto). The window
indexes events by one string key per resource: the name key when the ref has
a kind and a name, else the uid key. :func:`same_resource` then applies the
uid rule, so a recreated object (same name, new uid) is not the same resource.
"""

from __future__ import annotations

from corrmesh.v1 import event_pb2

#: Kinds ranked by how high they sit in an owner chain; an OWNER relation
#: between two kinds of different rank reads "<lower> is owned by <higher>".
_OWNER_RANK = {
    "CronJob": 4,
    "Deployment": 3,
    "StatefulSet": 3,
    "DaemonSet": 3,
    "ReplicaSet": 2,
    "Job": 2,
    "Pod": 1,
}


def resource_key(ref: event_pb2.ResourceRef) -> str:
    """The index key of ``ref``; "" when it names nothing."""
    if ref.kind and ref.name:
        return f"ref\x1f{ref.cluster}\x1f{ref.kind}\x1f{ref.namespace}\x1f{ref.name}"
    if ref.uid:
        return f"uid\x1f{ref.cluster}\x1f{ref.uid}"
    return ""


def same_resource(a: event_pb2.ResourceRef, b: event_pb2.ResourceRef) -> bool:
    """True when ``a`` and ``b`` name one resource (the event.proto rule)."""
    if a.uid and b.uid:
        return a.uid == b.uid
    key = resource_key(a)
    return bool(key) and key == resource_key(b)


def describe(ref: event_pb2.ResourceRef) -> str:
    """``Kind namespace/name`` (or ``Kind name``) for reasons and titles."""
    name = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    return f"{ref.kind} {name or ref.uid}".strip()


def owner_sentence(a: event_pb2.ResourceRef, b: event_pb2.ResourceRef) -> str:
    """How a person reads an OWNER relation whose direction Topology does not say."""
    rank_a = _OWNER_RANK.get(a.kind, 0)
    rank_b = _OWNER_RANK.get(b.kind, 0)
    if rank_a < rank_b:
        return f"{describe(a)} is owned by {describe(b)}"
    if rank_b < rank_a:
        return f"{describe(b)} is owned by {describe(a)}"
    return f"{describe(a)} and {describe(b)} are in one owner chain"
