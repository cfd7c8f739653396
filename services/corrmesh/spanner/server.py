"""The Spanner server process: configuration API over a migrated store."""

from __future__ import annotations

import asyncio
import logging

import grpc

from corrmesh.runtime.server import ServiceApp, run
from corrmesh.runtime.settings import Settings, load_settings
from corrmesh.spanner.servicer import SpannerServicer
from corrmesh.spanner.store import SpannerStore
from corrmesh.v1 import spanner_pb2_grpc

log = logging.getLogger(__name__)


class SpannerApp(ServiceApp):
    """SpannerService on one gRPC server, backed by its own database."""

    service_names = ("corrmesh.v1.SpannerService",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.store = SpannerStore(settings.effective_database_url)

    def register(self, server: grpc.aio.Server) -> None:
        spanner_pb2_grpc.add_SpannerServiceServicer_to_server(
            SpannerServicer(self.store, self.settings), server
        )

    async def start(self) -> None:
        """Connects to the database and migrates it to the newest schema."""
        await asyncio.to_thread(self.store.open)

    async def stop(self) -> None:
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
