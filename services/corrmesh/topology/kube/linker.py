"""Applies Kubernetes objects to the graph: resources, reference edges, selectors.

Every reference an object makes is indexed by its target (a uid or a name)
whether or not the target is in the graph yet, so the edge appears as soon
as both ends exist, in whatever order list and watch deliver them, and
reappears when a deleted target is created again. An object's references
are diffed on every update: only edges that really changed are touched, and
each touched edge becomes a change for WatchTopology when changes are being
recorded (watch events); a relist records none (its one RESYNCED change
stands for them all).

Everything here is synchronous and runs on the event loop: one call applies
one object, or one whole list, without a reader ever seeing it half done.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key, key_of, name_key_of
from corrmesh.topology.kube.kinds import ServedKind
from corrmesh.topology.kube.mapping import (
    MalformedObjectError,
    Reference,
    Target,
    labels_of,
    ref_of,
    references,
    service_selector,
    to_resource,
)
from corrmesh.topology.kube.selection import SelectorIndex
from corrmesh.topology.messages import edge_change, edge_message, resource_change
from corrmesh.v1 import topology_pb2

SELECTOR = topology_pb2.EDGE_TYPE_SELECTOR
DEPENDENCY = topology_pb2.EDGE_TYPE_DEPENDENCY
UPSERTED = topology_pb2.CHANGE_TYPE_RESOURCE_UPSERTED
DELETED = topology_pb2.CHANGE_TYPE_RESOURCE_DELETED
EDGE_ADDED = topology_pb2.CHANGE_TYPE_EDGE_ADDED
EDGE_REMOVED = topology_pb2.CHANGE_TYPE_EDGE_REMOVED

Changes = list[topology_pb2.TopologyChange] | None
#: (referrer, edge type, referrer is the edge's from end)
Waiter = tuple[Key, int, bool]


class KubeLinker:
    """The Kubernetes part of one graph, for every cluster."""

    def __init__(self, graph: TopologyGraph) -> None:
        self.graph = graph
        #: (cluster, kind) -> keys of that kind synced from that cluster.
        self.members: dict[tuple[str, str], dict[Key, None]] = {}
        self._refs: dict[Key, set[Reference]] = {}
        self._waiting: dict[Target, dict[Waiter, None]] = {}
        self.selection = SelectorIndex()
        self._now = timestamp_pb2.Timestamp()

    # ---- edges -----------------------------------------------------------

    def _resolve(self, target: Target) -> Key | None:
        if len(target) == 2:
            return target if target in self.graph.resources else None
        return self.graph.find_name(target)  # type: ignore[arg-type]

    def _add_edge(self, source: Key, target: Key, edge_type: int, changes: Changes) -> None:
        added = source != target and self.graph.add_edge(source, target, edge_type)
        if added and changes is not None:
            edge = edge_message(self.graph, (source, target, edge_type))
            changes.append(edge_change(EDGE_ADDED, edge, self._now))

    def _remove_edge(self, source: Key, target: Key, edge_type: int, changes: Changes) -> None:
        if not self.graph.has_edge(source, target, edge_type):
            return
        if changes is not None:
            edge = edge_message(self.graph, (source, target, edge_type))
            changes.append(edge_change(EDGE_REMOVED, edge, self._now))
        self.graph.remove_edge(source, target, edge_type)

    def _link(self, key: Key, reference: Reference, changes: Changes) -> None:
        edge_type, is_from, target = reference
        self._waiting.setdefault(target, {})[(key, edge_type, is_from)] = None
        other = self._resolve(target)
        if other is not None:
            source, sink = (key, other) if is_from else (other, key)
            self._add_edge(source, sink, edge_type, changes)

    def _forget(self, key: Key, reference: Reference) -> None:
        """Stops ``key`` waiting for the target of ``reference``."""
        edge_type, is_from, target = reference
        waiters = self._waiting.get(target)
        if waiters is not None:
            waiters.pop((key, edge_type, is_from), None)
            if not waiters:
                del self._waiting[target]

    def _unlink(self, key: Key, reference: Reference, changes: Changes) -> None:
        self._forget(key, reference)
        edge_type, is_from, target = reference
        other = self._resolve(target)
        if other is not None:
            source, sink = (key, other) if is_from else (other, key)
            self._remove_edge(source, sink, edge_type, changes)

    def _attach_waiters(self, key: Key, targets: tuple[Target, ...], changes: Changes) -> None:
        """Edges from references made before ``key`` existed."""
        for target in targets:
            for referrer, edge_type, is_from in list(self._waiting.get(target, ())):
                if referrer in self.graph.resources:
                    source, sink = (referrer, key) if is_from else (key, referrer)
                    self._add_edge(source, sink, edge_type, changes)

    def _sync_selector_edges(
        self, key: Key, wanted: set[Key], is_service: bool, changes: Changes
    ) -> None:
        graph = self.graph
        current = set(
            graph.outgoing(key, SELECTOR) if is_service else graph.incoming(key, SELECTOR)
        )
        for other in current - wanted:
            pair = (key, other) if is_service else (other, key)
            self._remove_edge(*pair, SELECTOR, changes)
        for other in wanted - current:
            pair = (key, other) if is_service else (other, key)
            self._add_edge(*pair, SELECTOR, changes)

    # ---- objects ---------------------------------------------------------

    def upsert(
        self,
        cluster: str,
        served: ServedKind,
        obj: dict[str, Any],
        now: timestamp_pb2.Timestamp,
        changes: Changes = None,
    ) -> Key:
        """Adds or updates ``obj``; unchanged (same resourceVersion) costs nothing.

        Raises MalformedObjectError for an object without a name.
        """
        kind = served.kind
        ref = ref_of(cluster, kind, served.api_version, obj)
        key = key_of(ref)
        graph = self.graph
        existing = graph.resources.get(key)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if existing is not None and version and existing.resource_version == version:
            return key
        self._now = now
        created = existing.created_at if existing is not None else None
        labels = labels_of(obj)
        resource = to_resource(ref, obj, now, created, labels)
        graph.upsert_resource(resource)
        self.members.setdefault((cluster, kind), {})[key] = None
        if changes is not None:
            changes.append(resource_change(UPSERTED, resource, now))
        if existing is None:
            self._attach_waiters(key, (key, name_key_of(ref)), changes)
            declared = ("ref", *name_key_of(ref))
            if declared in graph.resources:
                self._add_edge(declared, key, DEPENDENCY, changes)
        old = self._refs.get(key, set())
        new = references(cluster, kind, obj)
        for reference in old - new:
            self._unlink(key, reference, changes)
        for reference in new - old:
            self._link(key, reference, changes)
        if new:
            self._refs[key] = new
        else:
            self._refs.pop(key, None)
        scope = (cluster, ref.namespace)
        if kind == "Pod":
            if self.selection.pod_labels(key) != labels:
                services = self.selection.set_pod(key, scope, labels)
                self._sync_selector_edges(key, services, False, changes)
        elif kind == "Service":
            selector = service_selector(obj)
            if self.selection.service_selector(key) != (selector or None):
                pods = self.selection.set_service(key, scope, selector)
                self._sync_selector_edges(key, pods, True, changes)
        return key

    def link_declared(self, declared: Key) -> None:
        """Links a declared resource to the observed object of the same name:
        the declared name depends on the object, so the object's failure
        reaches whatever was declared to depend on the name."""
        if declared[0] != "ref":
            return
        observed = self.graph.find_name(declared[1:])  # type: ignore[arg-type]
        if observed is not None and observed[0] == "uid":
            self._add_edge(declared, observed, DEPENDENCY, None)

    def delete(
        self,
        cluster: str,
        served: ServedKind,
        obj: dict[str, Any],
        now: timestamp_pb2.Timestamp,
        changes: Changes = None,
    ) -> None:
        """Removes ``obj`` (from a DELETED event) and its edges, if known."""
        key = key_of(ref_of(cluster, served.kind, served.api_version, obj))
        if key in self.graph.resources:
            self._now = now
            self.delete_key(cluster, served.kind, key, changes)

    def delete_key(self, cluster: str, kind: str, key: Key, changes: Changes = None) -> None:
        for reference in self._refs.pop(key, ()):
            self._forget(key, reference)
        self.selection.remove_pod(key)
        self.selection.remove_service(key)
        graph = self.graph
        resource = graph.resources[key]
        if changes is not None:
            for edge in graph.edges_of(key):
                changes.append(edge_change(EDGE_REMOVED, edge_message(graph, edge), self._now))
            changes.append(resource_change(DELETED, resource, self._now))
        graph.delete_resource(key)
        members = self.members.get((cluster, kind))
        if members is not None:
            members.pop(key, None)

    def replace(
        self,
        cluster: str,
        served: ServedKind,
        objects: list[dict[str, Any]],
        now: timestamp_pb2.Timestamp,
    ) -> int:
        """Makes ``objects`` the cluster's whole view of the kind; returns how many
        were malformed and skipped. Records no per-object changes."""
        seen: set[Key] = set()
        skipped = 0
        for obj in objects:
            try:
                seen.add(self.upsert(cluster, served, obj, now))
            except MalformedObjectError:
                skipped += 1
        members = self.members.get((cluster, served.kind), {})
        for key in [k for k in members if k not in seen]:
            self.delete_key(cluster, served.kind, key)
        return skipped
