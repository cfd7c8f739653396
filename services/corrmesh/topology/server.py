"""The Topology server: store, graph, writer and servicer wired into one ServiceApp."""

from __future__ import annotations

import asyncio
import logging

import grpc

from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.gc_tuning import tune_garbage_collection
from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import Settings, load_settings
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.topology.declared import DependenciesFileError, load_dependencies_file
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.kube.cluster import ClusterConfigError, parse_clusters
from corrmesh.topology.kube.events import EventPublisher
from corrmesh.topology.kube.registry import KubeSync
from corrmesh.topology.servicer import TopologyServicer
from corrmesh.topology.store import TopologyStore
from corrmesh.topology.writer import Retention, SelfDependencyError, TopologyWriter
from corrmesh.v1 import topology_pb2_grpc

log = logging.getLogger(__name__)


class TopologyApp(ServiceApp):
    """Rebuilds the graph from the store at start, then serves TopologyService."""

    service_names = ("corrmesh.v1.TopologyService",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.store = TopologyStore(settings.effective_database_url)
        self.graph = TopologyGraph()
        self.notifier = HeadNotifier()
        retention = Retention(
            max_count=settings.topology_changes_max_count,
            max_age_seconds=settings.topology_changes_max_age_hours * 3600.0,
        )
        self.writer = TopologyWriter(self.graph, self.store, self.notifier, retention)
        self.kube: KubeSync | None = None
        self.events: EventPublisher | None = None
        self._ingest: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        servicer = TopologyServicer(
            self.graph, self.writer, self.store, self.notifier, self.stopping
        )
        topology_pb2_grpc.add_TopologyServiceServicer_to_server(servicer, server)

    async def start(self) -> None:
        tune_garbage_collection()
        await asyncio.to_thread(self.store.migrate)
        snapshot = await asyncio.to_thread(self.store.snapshot)
        clusters = parse_clusters(self.settings.kube_clusters)
        if clusters:
            self._ingest = open_channel(self.settings.ingest_address, self.settings)
            self.events = EventPublisher(self._ingest)
            self.kube = KubeSync(clusters, self.graph, self.writer, self.events)
            self.writer.on_declared = self.kube.linker.link_declared
        self.writer.rebuild(snapshot)
        path = self.settings.dependencies_file
        if path:
            dependencies = await asyncio.to_thread(load_dependencies_file, path)
            if dependencies:
                try:
                    await self.writer.upsert_dependencies(dependencies)
                except SelfDependencyError as exc:
                    raise DependenciesFileError(
                        f"dependencies file {path}: dependencies[{exc.index}].to: "
                        "names the same resource as `from`"
                    ) from exc
        if self.kube is not None and self.events is not None:
            self.events.start()
            await self.kube.start()
        log.info(
            "graph loaded",
            extra={
                "resources": len(self.graph.resources),
                "edges": self.graph.edge_count(),
                "head": self.notifier.head,
            },
        )

    async def stop(self) -> None:
        if self.kube is not None:
            await self.kube.stop()
        if self.events is not None:
            await self.events.stop()
        if self._ingest is not None:
            await self._ingest.close()
        await self.writer.close()
        await asyncio.to_thread(self.store.close)

    async def ready(self) -> bool:
        try:
            return await asyncio.to_thread(self.store.ping)
        except Exception:  # any database error means not ready, never a crash
            return False


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m corrmesh.topology``; a bad dependencies file
    ends the start with its one-line error instead of a traceback."""
    try:
        run(TopologyApp, load_settings("topology", argv))
    except (DependenciesFileError, ClusterConfigError) as exc:
        raise SystemExit(f"corrmesh topology: {exc}") from None
