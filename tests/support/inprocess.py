"""Run one service's server inside the test's event loop, on a free port."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from corrmesh.runtime.server import Server, ServiceApp
from corrmesh.runtime.settings import Settings


@asynccontextmanager
async def running(
    app_type: type[ServiceApp], service: str, **overrides: Any
) -> AsyncIterator[tuple[ServiceApp, str]]:
    """Starts ``app_type`` on 127.0.0.1 with a free port; yields (app, "127.0.0.1:PORT").

    ``overrides`` are Settings fields (database_url, ingest_address, ...).
    """
    settings = dataclasses.replace(
        Settings(service=service), host="127.0.0.1", port=0, grace_seconds=1.0, **overrides
    )
    app = app_type(settings)
    server = Server(app)
    port = await server.start()
    try:
        yield app, f"127.0.0.1:{port}"
    finally:
        await server.stop()
