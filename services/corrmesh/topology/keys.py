"""Identity of resources in the graph.

Two refs name the same resource when their uids are equal or, without uids,
when cluster, kind, namespace and name are equal (event.proto). So a resource
is keyed by ``("uid", uid)`` when it has a uid and by
``("ref", cluster, kind, namespace, name)`` otherwise. Keys are plain tuples:
hashable, cheap to compare, and serialisable to one string for the store.
"""

from __future__ import annotations

import json

from corrmesh.v1 import event_pb2

#: A resource's identity in the graph (see the module docstring).
Key = tuple[str, ...]
#: (cluster, kind, namespace, name): how a resource is found without its uid.
NameKey = tuple[str, str, str, str]


def name_key_of(ref: event_pb2.ResourceRef) -> NameKey:
    """The (cluster, kind, namespace, name) of ``ref``."""
    return (ref.cluster, ref.kind, ref.namespace, ref.name)


def key_of(ref: event_pb2.ResourceRef) -> Key:
    """The key a resource named by ``ref`` is stored under."""
    if ref.uid:
        return ("uid", ref.uid)
    return ("ref", ref.cluster, ref.kind, ref.namespace, ref.name)


def key_to_text(key: Key) -> str:
    """A key as one string, for a database column."""
    return json.dumps(list(key), separators=(",", ":"))


def key_from_text(text: str) -> Key:
    """The inverse of :func:`key_to_text`."""
    return tuple(str(part) for part in json.loads(text))


def describe(ref: event_pb2.ResourceRef) -> str:
    """``Kind namespace/name`` (or ``Kind name``), for summaries and errors."""
    name = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    return f"{ref.kind} {name or ref.uid}".strip()
