"""The Ingest server process: ``python -m corrmesh.ingest``."""

from __future__ import annotations

import asyncio

import grpc
from opentelemetry.metrics import MeterProvider

from corrmesh.ingest.dicom_scp import DicomScp, ScpConfig
from corrmesh.ingest.edge import EdgePublisher
from corrmesh.ingest.log import EventLog
from corrmesh.ingest.publish import METER_NAME, Publisher
from corrmesh.ingest.servicer import IngestServicer
from corrmesh.ingest.webhooks import WebhookServer
from corrmesh.ingest.writer import GroupCommitWriter
from corrmesh.runtime.db import create_db_engine
from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import Settings, load_settings
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.v1 import ingest_pb2_grpc


class IngestApp(ServiceApp):
    """Ingest's part of the server: the event log, its writer and the RPCs."""

    service_names = ("corrmesh.v1.IngestService",)
    #: None: the global MeterProvider (tests inject their own).
    meter_provider: MeterProvider | None = None

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.log = EventLog(create_db_engine(settings.effective_database_url))
        self.notifier = HeadNotifier()
        self.writer = GroupCommitWriter(self.log, self.notifier)
        meter = (
            self.meter_provider.get_meter(METER_NAME) if self.meter_provider is not None else None
        )
        self.publisher = Publisher(self.writer, meter)
        #: The edge listeners, when their ports are set (>= 0); see start().
        self.dicom_scp: DicomScp | None = None
        self.webhooks: WebhookServer | None = None

    def register(self, server: grpc.aio.Server) -> None:
        servicer = IngestServicer(self.log, self.publisher, self.notifier, self.stopping)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)

    async def start(self) -> None:
        await self.log.open()
        self.notifier.announce(self.log.head)
        self.writer.start()
        # The edge publishes through the same validation and log as Publish.
        sink = EdgePublisher(self.publisher)
        try:
            if self.settings.ingest_dicom_port >= 0:
                self.dicom_scp = DicomScp(ScpConfig.from_settings(self.settings), sink)
                await asyncio.to_thread(self.dicom_scp.start)
            if self.settings.ingest_webhook_port >= 0:
                self.webhooks = WebhookServer(self.settings, sink)
                await self.webhooks.start()
        except BaseException:
            await self._stop_edges()
            raise

    async def _stop_edges(self) -> None:
        # Edge threads wait on the event loop for their commits: stop them from
        # a worker thread so the loop keeps committing while they finish.
        if self.webhooks is not None:
            await self.webhooks.stop()
            self.webhooks = None
        if self.dicom_scp is not None:
            await asyncio.to_thread(self.dicom_scp.stop)
            self.dicom_scp = None

    async def stop(self) -> None:
        # Edges first, then calls in flight have finished (the gRPC server
        # stopped first); commit whatever they left queued, close the database.
        await self._stop_edges()
        await self.writer.stop()
        self.log.close()

    async def ready(self) -> bool:
        if not self.writer.running:
            return False
        try:
            return await asyncio.to_thread(self.log.ping)
        except Exception:
            return False


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m corrmesh.ingest``."""
    run(IngestApp, load_settings("ingest", argv))
