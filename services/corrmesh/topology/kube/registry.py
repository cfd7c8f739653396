"""All clusters at once: their syncs, the loop applying what they observe,
their health as ``Cluster`` resources, and their Events on the way to Ingest.

Each cluster shows up in the graph as a resource of kind ``Cluster`` (name
and cluster = the cluster's name) whose attributes tell how its sync stands:
``state`` is ``connecting``, ``syncing``, ``synced``, ``degraded`` (some kind
forbidden or failing; the rest keeps syncing and serving), ``unreachable`` or
``error``; ``kind.<Kind>`` gives each kind's state ("synced v1",
"forbidden: ...", "skipped: replaced by EndpointSlice"). A cluster that is
away or refuses a kind never stops the other clusters or the queries.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key, key_of
from corrmesh.topology.kube.cluster import CLUSTER_LEVEL, ClusterConfig, ClusterSync
from corrmesh.topology.kube.events import EventPublisher, to_event
from corrmesh.topology.kube.inbox import Delta, Inbox, Item, KindState, Replace
from corrmesh.topology.kube.linker import KubeLinker
from corrmesh.topology.kube.mapping import MalformedObjectError
from corrmesh.topology.kube.reflector import WatchOptions
from corrmesh.topology.messages import now_timestamp, resource_change
from corrmesh.topology.writer import TopologyWriter
from corrmesh.v1 import event_pb2, topology_pb2

log = logging.getLogger(__name__)

CLUSTER_KIND = "Cluster"
RESYNCED = topology_pb2.CHANGE_TYPE_RESYNCED
UPSERTED = topology_pb2.CHANGE_TYPE_RESOURCE_UPSERTED
#: Kind states that count as healthy; the others make a cluster degraded.
_SETTLED = {"synced", "skipped"}
_FAILING = {"forbidden", "error", "unreachable"}
#: Options for every sync; tests shorten the timings.
DEFAULT_OPTIONS = WatchOptions()
GC_PAUSE_MAX_SECONDS = 10.0
GC_IDLE_SECONDS = 0.5


@dataclass
class ClusterStatus:
    """How one cluster's sync stands."""

    name: str
    state: str = "connecting"
    detail: str = ""
    kinds: dict[str, tuple[str, str]] = field(default_factory=dict)
    relists: int = 0

    def overall(self) -> str:
        if self.state not in ("discovered",):
            return self.state
        states = [state for state, _ in self.kinds.values()]
        if any(state in _FAILING for state in states):
            return "degraded"
        if all(state in _SETTLED for state in states):
            return "synced"
        return "syncing"

    def attributes(self) -> dict[str, str]:
        found = {"state": self.overall()}
        if self.detail:
            found["detail"] = self.detail
        for kind, (state, detail) in sorted(self.kinds.items()):
            found[f"kind.{kind}"] = f"{state}: {detail}" if detail else state
        return found


class _CollectorPause:
    """Keeps the cyclic garbage collector off while a burst of watch events is
    being worked off, and on again once no item came for GC_IDLE_SECONDS.

    Events wait in the inbox as decoded JSON (a 10,000-event burst is about a
    million objects), and after a relist froze the graph the collector's
    heuristics see a small heap, so it runs full collections over that
    backlog again and again (a third of the reflectors' time in a burst).
    Decoded events hold no cycles: reference counting frees them. A burst
    that never ends gets a collection every :data:`GC_PAUSE_MAX_SECONDS`.
    """

    def __init__(self) -> None:
        self._since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def begin(self) -> None:
        now = time.monotonic()
        if self._since is None:
            if gc.isenabled():  # else someone else keeps it off: leave it alone
                gc.disable()
                self._since = now
        elif now - self._since > GC_PAUSE_MAX_SECONDS:
            gc.collect()
            self._since = now

    def end(self) -> None:
        if self._since is not None:
            self._since = None
            gc.enable()


def cluster_ref(name: str) -> event_pb2.ResourceRef:
    """The ref of the ``Cluster`` resource standing for cluster ``name``."""
    return event_pb2.ResourceRef(cluster=name, kind=CLUSTER_KIND, name=name)


class KubeSync:
    """Keeps the graph in step with every configured cluster."""

    def __init__(
        self,
        configs: Sequence[ClusterConfig],
        graph: TopologyGraph,
        writer: TopologyWriter,
        publisher: EventPublisher | None,
        options: WatchOptions | None = None,
    ) -> None:
        self.configs = list(configs)
        self.graph = graph
        self.writer = writer
        self.publisher = publisher
        self.options = options or DEFAULT_OPTIONS
        self.linker = KubeLinker(graph)
        self.status = {c.name: ClusterStatus(c.name) for c in self.configs}
        self.clusters: list[ClusterSync] = []
        self.applied = 0
        self._inbox: Inbox | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._inbox = Inbox(asyncio.get_running_loop())
        await self.writer.apply_observed(self._publish_initial_status)
        for config in self.configs:
            cluster = ClusterSync(config, self._inbox, self.options)
            self.clusters.append(cluster)
            cluster.start()
        self._task = asyncio.create_task(self._apply_loop(), name="kube-apply")

    async def stop(self) -> None:
        if self._inbox is not None:
            self._inbox.close()
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.clusters))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _publish_initial_status(self) -> list[topology_pb2.TopologyChange]:
        now = now_timestamp()
        return [self._status_change(status, now) for status in self.status.values()]

    def _status_change(
        self, status: ClusterStatus, now: timestamp_pb2.Timestamp
    ) -> topology_pb2.TopologyChange:
        resource = topology_pb2.Resource(
            ref=cluster_ref(status.name),
            origin=topology_pb2.RESOURCE_ORIGIN_KUBERNETES,
            attributes=status.attributes(),
            updated_at=now,
        )
        key: Key = key_of(resource.ref)
        previous = self.graph.resources.get(key)
        resource.created_at.CopyFrom(previous.created_at if previous is not None else now)
        self.graph.upsert_resource(resource)
        return resource_change(UPSERTED, resource, now)

    async def wait_until(self, states: set[str], timeout: float) -> dict[str, str]:
        """Waits until every cluster's state is in ``states``; returns the states.
        Raises TimeoutError with the states when they do not get there."""

        def current() -> dict[str, str]:
            return {name: status.overall() for name, status in self.status.items()}

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: set(current().values()) <= states), timeout
                )
            except TimeoutError:
                raise TimeoutError(f"clusters not {sorted(states)}: {current()}") from None
        return current()

    async def wait_applied(self, count: int, timeout: float) -> None:
        """Waits until ``count`` items (lists, watch events, states) are applied."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.applied >= count), timeout)

    async def _apply_loop(self) -> None:
        assert self._inbox is not None
        inbox = self._inbox
        pause = _CollectorPause()
        while True:
            if pause.active:
                try:
                    await asyncio.wait_for(inbox.wait(), GC_IDLE_SECONDS)
                except TimeoutError:  # the burst is over
                    pause.end()
                    continue
            else:
                await inbox.wait()
            items = inbox.drain()
            if not items:
                continue
            pause.begin()
            try:
                await self.writer.apply_observed(functools.partial(self._apply, items))
            except Exception:  # a bug in one batch must not end the sync
                log.exception("applying cluster items failed")
            async with self._changed:
                self._changed.notify_all()

    def _apply(self, items: list[Item]) -> list[topology_pb2.TopologyChange]:
        # A relist allocates tens of thousands of long-lived objects and no
        # cycles: the cyclic collector would only rescan them, again and
        # again (it doubles the time of a 10,000-Pod first graph).
        # Once a list is in, freezing moves the graph out of the collector's
        # sight for good: later collections (watch events, JSON decoding in
        # the reflectors) no longer rescan tens of thousands of live objects.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._apply_items(items)
        finally:
            if any(isinstance(item, Replace) for item in items):
                gc.collect()  # so no garbage of the old view is frozen with it
                gc.freeze()
            if enabled:
                gc.enable()

    def _apply_items(self, items: list[Item]) -> list[topology_pb2.TopologyChange]:
        now = now_timestamp()
        changes: list[topology_pb2.TopologyChange] = []
        touched: dict[str, None] = {}
        events: list[event_pb2.Event] = []
        for item in items:
            if isinstance(item, KindState):
                self._set_state(item)
                touched[item.cluster] = None
            elif item.served.spec.events:
                self._collect_events(item, events)
            elif isinstance(item, Replace):
                skipped = self.linker.replace(item.cluster, item.served, item.objects, now)
                if skipped:
                    log.warning(
                        "malformed objects skipped",
                        extra={"cluster": item.cluster, "kind": item.served.kind, "count": skipped},
                    )
                resync = topology_pb2.TopologyChange(
                    type=RESYNCED,
                    cluster=item.cluster,
                    changed_at=now,
                    resource=topology_pb2.Resource(
                        ref=event_pb2.ResourceRef(cluster=item.cluster, kind=item.served.kind)
                    ),
                )
                changes.append(resync)
                self.status[item.cluster].relists += 1
            else:
                self._apply_delta(item, now, changes)
            self.applied += 1
        for name in touched:
            changes.append(self._status_change(self.status[name], now))
        if events and self.publisher is not None:
            self.publisher.submit(events)
        return changes

    def _apply_delta(
        self, delta: Delta, now: timestamp_pb2.Timestamp, changes: list[topology_pb2.TopologyChange]
    ) -> None:
        try:
            if delta.type == "DELETED":
                self.linker.delete(delta.cluster, delta.served, delta.object, now, changes)
            else:
                self.linker.upsert(delta.cluster, delta.served, delta.object, now, changes)
        except MalformedObjectError as exc:
            log.warning(
                "malformed object skipped", extra={"cluster": delta.cluster, "error": str(exc)}
            )

    def _collect_events(self, item: Replace | Delta, events: list[event_pb2.Event]) -> None:
        if isinstance(item, Delta):
            objects = [] if item.type == "DELETED" else [item.object]
        else:
            objects = item.objects
        for obj in objects:
            event = to_event(item.cluster, obj)
            if event is not None:
                events.append(event)

    def _set_state(self, item: KindState) -> None:
        status = self.status[item.cluster]
        if item.kind == CLUSTER_LEVEL:
            status.state, status.detail = item.state, item.detail
        else:
            status.kinds[item.kind] = (item.state, item.detail)
        if item.state in _FAILING:
            log.warning(
                "cluster sync degraded",
                extra={"cluster": item.cluster, "kind": item.kind, "state": item.state},
            )
