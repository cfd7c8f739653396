"""The one path that changes the graph: persist first, then apply, then announce.

Each declared mutation is planned against the current graph (what is new,
what goes away), written to the store with its change-log entries in one
transaction, and only then applied to the in-memory graph, so a failed
commit leaves the graph as it was. A lock serialises mutations: the change
log's sequences then commit in order and a follower never sees a gap fill
in later.

What a cluster reports has already happened, so observed changes are applied
to the graph first and queued for the log; a background task writes the
queue in order while the next batch is applied (a burst of watch events
does not wait on each commit). When a log write fails the changes stay at
the front of the queue and are written, with back-off, ahead of anything
later, declared writes included: WatchTopology misses nothing and sees the
changes in the order the graph took them. Should the queue reach
:data:`MAX_UNLOGGED` changes (a database away for long), it is replaced by
one RESYNCED change per cluster: a watcher then relists that cluster, and
the writer holds nothing without bound.

The change log is trimmed as :class:`Retention` says, after appends, at most
every :data:`TRIM_EVERY_CHANGES` changes or :data:`TRIM_EVERY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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

log = logging.getLogger(__name__)

DEPENDENCY = topology_pb2.EDGE_TYPE_DEPENDENCY
DECLARED = topology_pb2.RESOURCE_ORIGIN_DECLARED
RESYNCED = topology_pb2.CHANGE_TYPE_RESYNCED
#: Observed changes held while the change log cannot be written, before they
#: collapse into one RESYNCED change per cluster.
MAX_UNLOGGED = 100_000
RETRY_INITIAL_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
FLUSH_ON_CLOSE_SECONDS = 5.0
TRIM_EVERY_CHANGES = 10_000
TRIM_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Retention:
    """How much of the change log is kept: the newest ``max_count`` changes,
    none older than ``max_age_seconds`` (0 turns a bound off)."""

    max_count: int = 1_000_000
    max_age_seconds: float = 7 * 24 * 3600.0

    def older_than(self) -> datetime | None:
        if self.max_age_seconds <= 0:
            return None
        return datetime.now(UTC) - timedelta(seconds=self.max_age_seconds)


class SelfDependencyError(ValueError):
    """Both ends of dependency ``index`` name the same resource in the graph."""

    def __init__(self, index: int) -> None:
        super().__init__(f"dependencies[{index}] depends on itself")
        self.index = index


class TopologyWriter:
    """Owns mutations of ``graph`` and their persistence in ``store``."""

    def __init__(
        self,
        graph: TopologyGraph,
        store: TopologyStore,
        notifier: HeadNotifier,
        retention: Retention | None = None,
    ) -> None:
        self.graph = graph
        self.store = store
        self.notifier = notifier
        self.retention = retention or Retention()
        self._lock = asyncio.Lock()
        #: One change-log write at a time, in queue order.
        self._log_lock = asyncio.Lock()
        #: Observed changes in the graph but not yet in the change log, in order.
        self.unlogged: list[topology_pb2.TopologyChange] = []
        self._flusher: asyncio.Task[None] | None = None
        self._since_trim = 0
        self._trimmed_at = time.monotonic()
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
            async with self._log_lock:
                sequences = await self._commit(write)
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
            async with self._log_lock:
                sequences = await self._commit(write)
            graph.remove_edge(*edge)
            for key in orphans:
                graph.delete_resource(key)
            self._announce(sequences)
            return True

    async def apply_observed(self, apply: Callable[[], list[topology_pb2.TopologyChange]]) -> None:
        """Runs ``apply`` (which changes the graph and returns the changes it
        made) and queues its changes for the change log.

        What a cluster reports has already happened, so the graph follows it
        at once and the log right after: a background task writes what is
        queued, in order, while the next batch is applied (see the module
        docstring for what happens when that write fails).
        """
        async with self._lock:
            changes = apply()
            if changes:
                self._queue(changes)

    def _queue(self, changes: list[topology_pb2.TopologyChange]) -> None:
        self.unlogged.extend(changes)
        if len(self.unlogged) > MAX_UNLOGGED:
            # Only a log that cannot keep up gets here: tell watchers to relist.
            clusters = dict.fromkeys(c.cluster for c in self.unlogged)
            now = now_timestamp()
            self.unlogged = [
                topology_pb2.TopologyChange(type=RESYNCED, cluster=name, changed_at=now)
                for name in clusters
            ]
            log.warning("change log behind; watchers will be told to relist")
        self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="topology-change-log")

    async def _flush_loop(self) -> None:
        delay = RETRY_INITIAL_SECONDS
        while self.unlogged:
            async with self._log_lock:
                try:
                    await self._commit(StoreWrite())
                    delay = RETRY_INITIAL_SECONDS
                    continue
                except Exception as exc:  # kept in order; retried below
                    log.warning("change log write failed", extra={"error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def flush(self) -> None:
        """Waits until every queued change is in the log; raises when the write fails."""
        async with self._log_lock:
            if self.unlogged:
                await self._commit(StoreWrite())

    async def _commit(self, write: StoreWrite) -> list[int]:
        """Applies ``write`` with the queued observed changes ahead of its own
        (holding the log lock); returns the sequences of its own changes. On
        failure the queued changes go back to the front of the queue."""
        assert self._log_lock.locked()
        taken, self.unlogged = self.unlogged, []
        write.changes[:0] = taken
        try:
            sequences = await asyncio.to_thread(self.store.apply, write)
        except BaseException:
            self.unlogged[:0] = taken
            if self.unlogged:
                self._ensure_flusher()  # whoever failed, the retry goes on
            raise
        finally:
            del write.changes[: len(taken)]
        self._announce(sequences)
        self._since_trim += len(sequences)
        if (
            self._since_trim >= TRIM_EVERY_CHANGES
            or time.monotonic() - self._trimmed_at >= TRIM_EVERY_SECONDS
        ):
            await self._trim()
        return sequences[len(taken) :]

    async def close(self) -> None:
        """Writes what is queued (briefly), then stops the background writer;
        anything still unlogged is lost with the graph, which a restart relists."""
        try:
            await asyncio.wait_for(self.flush(), FLUSH_ON_CLOSE_SECONDS)
        except Exception as exc:
            log.warning("change log not flushed at stop", extra={"error": str(exc)})
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _trim(self) -> None:
        self._since_trim = 0
        self._trimmed_at = time.monotonic()
        retention = self.retention
        if retention.max_count <= 0 and retention.max_age_seconds <= 0:
            return
        try:
            removed = await asyncio.to_thread(
                self.store.trim, retention.max_count, retention.older_than()
            )
        except Exception as exc:  # trimming is housekeeping: the next one tries again
            log.warning("change log trim failed", extra={"error": str(exc)})
            return
        if removed:
            log.info("change log trimmed", extra={"removed": removed})

    def _declared_end(self, ref: event_pb2.ResourceRef) -> Key | None:
        """The key a dependency end is declared under (as _end chooses it)."""
        if ref.uid:
            return self.graph.resolve(ref)
        key = key_of(ref)
        return key if key in self.graph.resources else self.graph.resolve(ref)

    def _announce(self, sequences: list[int]) -> None:
        if sequences:
            self.notifier.announce(max(sequences))
