"""The Ingest server process: ``python -m corrmesh.ingest``."""

from __future__ import annotations

import asyncio

import grpc
from opentelemetry.metrics import MeterProvider

from corrmesh.ingest.log import EventLog
from corrmesh.ingest.publish import METER_NAME, Publisher
from corrmesh.ingest.servicer import IngestServicer
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

    def register(self, server: grpc.aio.Server) -> None:
        servicer = IngestServicer(self.log, self.publisher, self.notifier, self.stopping)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)

    async def start(self) -> None:
        await self.log.open()
        self.notifier.announce(self.log.head)
        self.writer.start()

    async def stop(self) -> None:
        # Calls in flight have finished (the gRPC server stopped first); commit
        # whatever they left queued, then close the database.
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
