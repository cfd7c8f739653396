"""The Spanner server process: configuration API over a migrated store."""

from __future__ import annotations

import asyncio
import gc
import logging

import grpc

from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import Settings, load_settings
from corrmesh.spanner import dimse
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
        # pynetdicom logs every association and message at INFO (dozens of lines
        # per C-FIND, each formatted as JSON): keep it to warnings unless DEBUG.
        quiet = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
        logging.getLogger("pynetdicom").setLevel(quiet)
        # Nor build those lines only for the logger to drop them.
        dimse.quiet_pynetdicom()
        self.store = SpannerStore(settings.effective_database_url)
        self.publisher = Publisher(settings)
        ae_title = settings.spanner_dicom_ae_title
        self.engine = SpannerEngine(self.store, self.publisher, ae_title)
        self.retriever = Retriever(self.engine)
        self.listeners = ListenerManager(
            settings,
            SpanningScp(self.engine, self.retriever, ae_title),
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
        if self.settings.spanner_start_listeners:
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


def freeze_startup_heap() -> int:
    """Moves every object alive now out of the garbage collector's reach; how many.

    After the imports that is most of the process (pydicom's and pynetdicom's
    dictionaries, protobuf descriptors, SQLAlchemy and gRPC: some 120,000 tracked
    objects), and hardly any of it ever becomes garbage. pynetdicom's association server
    runs a full collection after every 60th association, and Python runs its own
    now and then: over the whole heap each one held the interpreter lock for 50 to
    70 ms here, stalling every query in flight; over what is left, about 4 ms."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> None:
    """``python -m corrmesh.spanner``: serve until SIGTERM/SIGINT."""
    settings = load_settings("spanner", argv)
    freeze_startup_heap()
    run(SpannerApp, settings)
