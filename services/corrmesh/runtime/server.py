"""Bootstrap shared by the four servers.

A service supplies a :class:`ServiceApp`: what it registers on the gRPC server,
what it starts and stops, and whether its dependencies answer. :func:`run`
does the rest the same way for every service: logs, tracing, interceptors
(OpenTelemetry, bearer tokens), health, reflection, TLS, and a graceful
shutdown on SIGTERM/SIGINT that drains streams and flushes spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from abc import ABC, abstractmethod
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from corrmesh.runtime.auth import BearerTokenInterceptor, load_tokens
from corrmesh.runtime.logs import configure_logging
from corrmesh.runtime.metrics import configure_metrics, shutdown_metrics
from corrmesh.runtime.settings import Settings
from corrmesh.runtime.tls import server_credentials
from corrmesh.runtime.tracing import configure_tracing, shutdown_tracing

log = logging.getLogger(__name__)

#: Large batches are the fast path (DESIGN.md): allow 64 MiB messages.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
HEALTH_INTERVAL_SECONDS = 1.0


class ServiceApp(ABC):
    """One service's part of a server process."""

    #: Full names of the gRPC services it registers ("corrmesh.v1.IngestService").
    service_names: Sequence[str] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Set when the server begins shutting down; streaming handlers end on it.
        self.stopping = asyncio.Event()

    @abstractmethod
    def register(self, server: grpc.aio.Server) -> None:
        """Adds the servicers to ``server``."""

    async def start(self) -> None:
        """Opens stores and starts background work; called before serving."""

    async def stop(self) -> None:
        """Stops background work and closes stores; streams are already ending."""

    async def ready(self) -> bool:
        """True when the service and the dependencies it needs answer."""
        return True


class Server:
    """A running gRPC server for one ServiceApp; :func:`run` drives it."""

    def __init__(self, app: ServiceApp) -> None:
        self.app = app
        self.settings = app.settings
        # Health probes and reflection are not worth a span each; the interceptor
        # also cannot wrap Health/Watch (a coroutine, not an async generator).
        untraced = filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))
        interceptors: list[grpc.aio.ServerInterceptor] = [
            aio_server_interceptor(filter_=filters.negate(untraced))
        ]
        if self.settings.auth_enabled:
            interceptors.append(BearerTokenInterceptor(load_tokens(self.settings.auth_tokens_file)))
        self.grpc_server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Starts serving; returns the bound port."""
        app = self.app
        app.register(self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (
                *app.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.grpc_server,
        )
        credentials = server_credentials(self.settings)
        address = self.settings.listen_address
        if credentials is None:
            self.port = self.grpc_server.add_insecure_port(address)
        else:
            self.port = self.grpc_server.add_secure_port(address, credentials)
        await self._set_health(False)
        await app.start()
        await self.grpc_server.start()
        self._health_task = asyncio.create_task(self._watch_health(), name="health")
        log.info(
            "serving",
            extra={
                "address": address,
                "port": self.port,
                "tls": credentials is not None,
                "auth": self.settings.auth_enabled,
            },
        )
        return self.port

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.app.service_names):
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        last: bool | None = None
        while not self.app.stopping.is_set():
            try:
                serving = await asyncio.wait_for(self.app.ready(), HEALTH_INTERVAL_SECONDS * 2)
            except Exception:  # a failing check means not serving, never a dead loop
                serving = False
            if serving != last:
                await self._set_health(serving)
                log.info("health", extra={"serving": serving})
                last = serving
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.app.stopping.wait(), HEALTH_INTERVAL_SECONDS)

    async def stop(self) -> None:
        """Graceful: not serving, end streams, finish calls in flight, close stores."""
        await self.health.enter_graceful_shutdown()
        self.app.stopping.set()
        if self._health_task is not None:
            self._health_task.cancel()
        await self.grpc_server.stop(self.settings.grace_seconds)
        await self.app.stop()
        log.info("stopped")


async def serve(app: ServiceApp) -> None:
    """Runs ``app`` until SIGTERM or SIGINT, then shuts down gracefully."""
    server = Server(app)
    await server.start()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await stop_requested.wait()
    log.info("shutting down")
    await server.stop()


def run(app_factory: type[ServiceApp], settings: Settings) -> None:
    """Entry point of ``python -m corrmesh.<service>``."""
    configure_logging(settings.service, settings.log_level)
    configure_tracing(settings.service)
    configure_metrics(settings.service)
    try:
        asyncio.run(serve(app_factory(settings)))
    finally:
        # A second signal while spans flush must not cut the flush short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        shutdown_tracing()
        shutdown_metrics()
