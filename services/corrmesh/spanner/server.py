"""The Spanner server process: configuration API over a migrated store."""

from __future__ import annotations

import asyncio
import logging
import os

import grpc

from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import SPANNER_DICOM_AE_TITLE, Settings, load_settings
from corrmesh.spanner.alerts import Publisher
from corrmesh.spanner.engine import SpannerEngine
from corrmesh.spanner.listeners import LISTENER_IDS, ListenerManager
from corrmesh.spanner.retrieve import Retriever
from corrmesh.spanner.scp import SpanningScp
from corrmesh.spanner.servicer import SpannerServicer
from corrmesh.spanner.store import SpannerStore
from corrmesh.spanner.web import build_app
from corrmesh.v1 import spanner_pb2_grpc

log = logging.getLogger(__name__)


class SpannerApp(ServiceApp):
    """SpannerService on one gRPC server, backed by its own database."""

    service_names = ("corrmesh.v1.SpannerService",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.store = SpannerStore(settings.effective_database_url)
        self.publisher = Publisher(settings)
        self.engine = SpannerEngine(self.store, self.publisher, SPANNER_DICOM_AE_TITLE)
        self.retriever = Retriever(self.engine)
        self.listeners = ListenerManager(
            settings,
            SpanningScp(self.engine, self.retriever, SPANNER_DICOM_AE_TITLE),
            build_app(self.engine, self.retriever),
        )

    def register(self, server: grpc.aio.Server) -> None:
        spanner_pb2_grpc.add_SpannerServiceServicer_to_server(
            SpannerServicer(self.store, self.settings, self.engine, self.retriever, self.listeners),
            server,
        )

    async def start(self) -> None:
        """Connects to the database and migrates it to the newest schema."""
        await asyncio.to_thread(self.store.open)
        if os.environ.get("CORRMESH_SPANNER_START_LISTENERS", "").lower() in ("1", "true", "yes"):
            for listener_id in LISTENER_IDS:
                await self.listeners.start(listener_id)

    async def stop(self) -> None:
        await self.listeners.stop_all()
        await self.engine.close()
        await self.publisher.close()
        await asyncio.to_thread(self.store.close)

    async def ready(self) -> bool:
        """Serving when the store answers."""
        try:
            return await asyncio.to_thread(self.store.ping)
        except Exception:  # any failure to answer means not ready, never a crash
            log.debug("store not ready", exc_info=True)
            return False


def main(argv: list[str] | None = None) -> None:
    """``python -m corrmesh.spanner``: serve until SIGTERM/SIGINT."""
    run(SpannerApp, load_settings("spanner", argv))
