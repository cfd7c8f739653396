"""The one path that changes the graph: persist first, then apply, then announce.

Each mutation is planned against the current graph (what is new, what goes
away), written to the store with its change-log entries in one transaction,
and only then applied to the in-memory graph, so a failed commit leaves the
graph as it was. A lock serialises mutations: the change log's sequences
then commit in order and a follower never sees a gap fill in later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC

from google.protobuf import timestamp_pb2

from corrmesh.runtime.streams import HeadNotifier
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key, key_from_text, key_of, key_to_text
from corrmesh.topology.messages import edge_change, edge_message, now_timestamp, resource_change
from corrmesh.topology.store import (
    Snapshot,
    StoredDependency,
    StoredResource,
    StoreWrite,
    TopologyStore,
)
from corrmesh.v1 import event_pb2, topology_pb2

DEPENDENCY = topology_pb2.EDGE_TYPE_DEPENDENCY
DECLARED = topology_pb2.RESOURCE_ORIGIN_DECLARED


class SelfDependencyError(ValueError):
    """Both ends of dependency ``index`` name the same resource in the graph."""

    def __init__(self, index: int) -> None:
        super().__init__(f"dependencies[{index}] depends on itself")
        self.index = index


class TopologyWriter:
    """Owns mutations of ``graph`` and their persistence in ``store``."""

    def __init__(self, graph: TopologyGraph, store: TopologyStore, notifier: HeadNotifier) -> None:
        self.graph = graph
        self.store = store
        self.notifier = notifier
        self._lock = asyncio.Lock()
        #: Called with each declared resource put in the graph (Kubernetes sync
        #: links it to the observed object of the same name).
        self.on_declared: Callable[[Key], None] | None = None

    def rebuild(self, snapshot: Snapshot) -> None:
        """Loads declared resources and dependencies into the (empty) graph."""
        for stored in snapshot.resources:
            resource = topology_pb2.Resource(ref=stored.ref, origin=DECLARED)
            resource.created_at.FromDatetime(stored.created_at)
            resource.updated_at.FromDatetime(stored.updated_at)
            self.graph.upsert_resource(resource)
            if self.on_declared is not None:
                self.on_declared(key_from_text(stored.key))
        for dep in snapshot.dependencies:
            self.graph.add_edge(
                key_from_text(dep.dependent_key), key_from_text(dep.dependency_key), DEPENDENCY
            )
        self.notifier.announce(snapshot.head)

    async def upsert_dependencies(self, dependencies: Sequence[topology_pb2.Dependency]) -> int:
        """Adds dependencies (updating descriptions of known ones); returns how many.

        Raises :class:`SelfDependencyError` when both ends resolve to one resource.
        """
        async with self._lock:
            graph = self.graph
            now = now_timestamp()
            write = StoreWrite()
            new_resources: dict[Key, topology_pb2.Resource] = {}
            new_edges: dict[tuple[Key, Key], None] = {}
            for index, dep in enumerate(dependencies):
                ends = []
                for ref in (getattr(dep, "from"), dep.to):
                    key, resource = self._end(ref, new_resources, now, write)
                    write.resources.append(
                        StoredResource(
                            key_to_text(key),
                            resource.ref,
                            resource.created_at.ToDatetime(tzinfo=UTC),
                            resource.updated_at.ToDatetime(tzinfo=UTC),
                        )
                    )
                    ends.append(key)
                source, target = ends
                if source == target:
                    raise SelfDependencyError(index)
                write.dependencies.append(
                    StoredDependency(key_to_text(source), key_to_text(target), dep.description)
                )
                if (source, target) in new_edges or graph.has_edge(source, target, DEPENDENCY):
                    continue
                new_edges[(source, target)] = None
                edge = topology_pb2.Edge(type=DEPENDENCY)
                getattr(edge, "from").CopyFrom(self._resource(source, new_resources).ref)
                edge.to.CopyFrom(self._resource(target, new_resources).ref)
                write.changes.append(edge_change(topology_pb2.CHANGE_TYPE_EDGE_ADDED, edge, now))
            sequences = await asyncio.to_thread(self.store.apply, write)
            for resource in new_resources.values():
                graph.upsert_resource(resource)
            for source, target in new_edges:
                graph.add_edge(source, target, DEPENDENCY)
            if self.on_declared is not None:
                for key in new_resources:
                    self.on_declared(key)
            self._announce(sequences)
            return len(dependencies)

    def _end(
        self,
        ref: event_pb2.ResourceRef,
        new_resources: dict[Key, topology_pb2.Resource],
        now: timestamp_pb2.Timestamp,
        write: StoreWrite,
    ) -> tuple[Key, topology_pb2.Resource]:
        """The graph key for one end of a dependency, declaring the resource if new.

        An end named without a uid is always the declared resource of that
        name, even when an observed object has the name too: the declaration
        then outlives the object being deleted and created again, and the
        Kubernetes sync links the two (see KubeLinker.link_declared).
        """
        key = self.graph.resolve(ref) if ref.uid else key_of(ref)
        if key is not None and key in self.graph.resources:
            return key, self.graph.resources[key]
        key = key_of(ref)
        resource = new_resources.get(key)
        if resource is None:
            resource = topology_pb2.Resource(ref=ref, origin=DECLARED)
            resource.created_at.CopyFrom(now)
            resource.updated_at.CopyFrom(now)
            new_resources[key] = resource
            write.changes.append(
                resource_change(topology_pb2.CHANGE_TYPE_RESOURCE_UPSERTED, resource, now)
            )
        return key, resource

    def _resource(
        self, key: Key, new_resources: dict[Key, topology_pb2.Resource]
    ) -> topology_pb2.Resource:
        return new_resources.get(key) or self.graph.resources[key]

    async def delete_dependency(
        self, dependent: event_pb2.ResourceRef, dependency: event_pb2.ResourceRef
    ) -> bool:
        """Removes a dependency; False when there is none. A declared resource
        left without edges goes too (the store drops it with its last
        dependency), so the graph holds only what is declared or observed."""
        async with self._lock:
            graph = self.graph
            source = self._declared_end(dependent)
            target = self._declared_end(dependency)
            if source is None or target is None or not graph.has_edge(source, target, DEPENDENCY):
                return False
            now = now_timestamp()
            edge = (source, target, DEPENDENCY)
            write = StoreWrite(removed_dependencies=[(key_to_text(source), key_to_text(target))])
            write.changes.append(
                edge_change(topology_pb2.CHANGE_TYPE_EDGE_REMOVED, edge_message(graph, edge), now)
            )
            orphans = [
                key
                for key in (source, target)
                if graph.resources[key].origin == DECLARED
                and all(other == edge for other in graph.edges_of(key))
            ]
            for key in orphans:
                write.changes.append(
                    resource_change(
                        topology_pb2.CHANGE_TYPE_RESOURCE_DELETED, graph.resources[key], now
                    )
                )
            sequences = await asyncio.to_thread(self.store.apply, write)
            graph.remove_edge(*edge)
            for key in orphans:
                graph.delete_resource(key)
            self._announce(sequences)
            return True

    async def apply_observed(self, apply: Callable[[], list[topology_pb2.TopologyChange]]) -> None:
        """Runs ``apply`` (which changes the graph and returns the changes it
        made) and appends its changes to the change log.

        What a cluster reports has already happened, so the graph follows it
        first and the log second; the lock still keeps the log's sequences in
        commit order with the declared writes.
        """
        async with self._lock:
            changes = apply()
            if changes:
                sequences = await asyncio.to_thread(self.store.apply, StoreWrite(changes=changes))
                self._announce(sequences)

    def _declared_end(self, ref: event_pb2.ResourceRef) -> Key | None:
        """The key a dependency end is declared under (as _end chooses it)."""
        if ref.uid:
            return self.graph.resolve(ref)
        key = key_of(ref)
        return key if key in self.graph.resources else self.graph.resolve(ref)

    def _announce(self, sequences: list[int]) -> None:
        if sequences:
            self.notifier.announce(max(sequences))
