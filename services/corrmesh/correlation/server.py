"""The Correlation server process: ``python -m corrmesh.correlation``."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.metrics import MeterProvider

from corrmesh.correlation.analysis.actions import BUILT_IN_RULES, load_rules
from corrmesh.correlation.analysis.analyst import Analyst
from corrmesh.correlation.analysis.reach import TopologyReach
from corrmesh.correlation.config import default_config
from corrmesh.correlation.consumer import Consumer
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.ingest_reader import IngestReader
from corrmesh.correlation.latency import LatencyReservoir
from corrmesh.correlation.metrics import METER_NAME, CorrelationMetrics
from corrmesh.correlation.queries import GroupQueries
from corrmesh.correlation.relations import TopologyRelations
from corrmesh.correlation.servicer import CorrelationServicer
from corrmesh.correlation.store import CorrelationStore
from corrmesh.correlation.topology_watch import TopologyWatch
from corrmesh.runtime.clients import open_channel
from corrmesh.runtime.gc_tuning import tune_garbage_collection
from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import Settings, load_settings
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import correlation_pb2_grpc

log = logging.getLogger(__name__)

PEER_HEALTH_TIMEOUT_SECONDS = 1.0


class CorrelationApp(ServiceApp):
    """Correlation's part of the server: the engine, its consumer, store and RPCs."""

    service_names = ("corrmesh.v1.CorrelationService",)
    #: None: the global MeterProvider (tests inject their own).
    meter_provider: MeterProvider | None = None

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.store = CorrelationStore(settings.effective_database_url)
        self.queries = GroupQueries(self.store.sessions)
        self.notifier = HeadNotifier()
        self.latency = LatencyReservoir()
        self.engine = CorrelationEngine(default_config())
        meter = (
            self.meter_provider.get_meter(METER_NAME) if self.meter_provider is not None else None
        )
        self.gate = EngineGate(
            self.engine, self.store, self.notifier, CorrelationMetrics(self.queries, meter)
        )
        self.consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self.analyst: Analyst | None = None
        self._analyst_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.topology_watch: TopologyWatch | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._health: dict[str, health_pb2_grpc.HealthStub] = {}
        self.servicer: CorrelationServicer | None = None

    def register(self, server: grpc.aio.Server) -> None:
        servicer = CorrelationServicer(self.gate, self.queries, self.latency, self.stopping)
        self.servicer = servicer
        correlation_pb2_grpc.add_CorrelationServiceServicer_to_server(servicer, server)

    async def start(self) -> None:
        tune_garbage_collection()
        await asyncio.to_thread(self.store.migrate)
        config = await asyncio.to_thread(self.store.load_config)
        if config is None:
            config = default_config()
            await asyncio.to_thread(self.store.save_config, config)
        self.engine.set_config(config)
        settings = self.settings
        ingest = open_channel(settings.ingest_address, settings)
        topology = open_channel(settings.topology_address, settings)
        self._channels = [ingest, topology]
        if self.servicer is not None:
            self.servicer.ingest_events = IngestReader(ingest)
        for name, address in (
            ("ingest", settings.ingest_address),
            ("topology", settings.topology_address),
        ):
            # Untraced: a health probe every second is noise in a trace backend.
            channel = open_channel(address, settings, traced=False)
            self._channels.append(channel)
            self._health[name] = health_pb2_grpc.HealthStub(channel)
        relations = TopologyRelations(topology)
        reach = TopologyReach(topology)
        self.topology_watch = TopologyWatch(topology, [relations, reach])
        self.consumer = Consumer(self.gate, ingest, relations, self.latency)
        rules = list(BUILT_IN_RULES)
        if settings.correlation_actions_file:
            rules = await asyncio.to_thread(load_rules, settings.correlation_actions_file) + rules
        self.analyst = Analyst(self.gate, reach, rules)
        self.gate.on_commit = self.analyst.note
        if self.servicer is not None:
            self.servicer.analyst = self.analyst
        await self.gate.recover()
        self.analyst.note_unanalysed()
        self._analyst_task = asyncio.create_task(
            self.analyst.run(self.stopping), name="correlation-analyst"
        )
        self._watch_task = asyncio.create_task(
            self.topology_watch.run(self.stopping), name="correlation-topology-watch"
        )
        self._task = asyncio.create_task(self.consumer.run(), name="correlation-consumer")
        self._clock_task = asyncio.create_task(
            self.gate.run_clock(self.stopping), name="correlation-clock"
        )

    async def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        for task in (self._task, self._clock_task, self._analyst_task, self._watch_task):
            if task is None:
                continue
            try:
                await asyncio.wait_for(task, self.settings.grace_seconds)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self._channels:
            await channel.close()
        self.store.close()

    async def _peer_serving(self, name: str) -> bool:
        try:
            response = await self._health[name].Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=PEER_HEALTH_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def ready(self) -> bool:
        """Serving when the store answers and Ingest and Topology report SERVING."""
        if not self._health:
            return False
        try:
            await asyncio.to_thread(self.store.ping)
        except Exception:
            return False
        ingest, topology = await asyncio.gather(
            self._peer_serving("ingest"), self._peer_serving("topology")
        )
        return ingest and topology


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m corrmesh.correlation``."""
    run(CorrelationApp, load_settings("correlation", argv))
