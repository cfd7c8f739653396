"""Ingest's HTTP webhook listener (Starlette on uvicorn, in the server's event loop).

``POST /webhooks/alertmanager`` takes Alertmanager's webhook payload
(version 4). Answers:

* 200 ``{"accepted": n, "event_ids": [...]}`` once every alert is durable;
* 400 ``{"error": ..., "field": ...}`` for a body that is not JSON or not a
  v4 payload (nothing stored), or when validation rejects some alerts (the
  others are stored; ``rejected`` lists the fields);
* 401 without a valid bearer token when tokens are configured, 413 for a
  body over 8 MiB, 503 when the log cannot commit (Alertmanager retries;
  event ids make the retry safe).

``GET /healthz`` answers 200 for probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from google.protobuf import timestamp_pb2
from opentelemetry import propagate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from corrmesh.ingest.alertmanager import PayloadError, payload_events
from corrmesh.ingest.edge import EdgePublisher, rejected_fields
from corrmesh.runtime.auth import WRITE_SCOPE, Principal, load_tokens
from corrmesh.runtime.settings import Settings
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, entry_span, spans_exported, tracer
from corrmesh.runtime.web import HTTP_PARSER, listening_socket

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

ALERTMANAGER_PATH = "/webhooks/alertmanager"
MAX_BODY_BYTES = 8 * 1024 * 1024


def _error(status: int, message: str, field: str = "") -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


class _Tokens:
    """Bearer tokens with the ``write`` scope, as the gRPC API checks them."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = [t.encode() for t, p in tokens.items() if WRITE_SCOPE in p.scopes]

    def allows(self, header: str) -> bool:
        presented = header[7:].strip().encode() if header.lower().startswith("bearer ") else b""
        return bool(presented) and any(hmac.compare_digest(t, presented) for t in self._tokens)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(sink: EdgePublisher, tokens: _Tokens | None = None) -> Starlette:
    """The webhook application; ``tokens`` None leaves it open (like the gRPC API)."""

    record = spans_exported()

    async def alertmanager(request: Request) -> Response:
        if tokens is not None and not tokens.allows(request.headers.get("authorization", "")):
            return _error(401, "missing or unknown bearer token (needs the 'write' scope)")
        body = await _read_body(request)
        if body is None:
            return _error(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
        parent = propagate.extract(dict(request.headers))
        with entry_span(_tracer, "alertmanager.webhook", parent, record=record) as span:
            try:
                payload = json.loads(body)
            except json.JSONDecodeError as exc:
                where = f"line {exc.lineno} column {exc.colno}"
                return _error(400, f"the body is not valid JSON: {exc.msg} at {where}")
            except UnicodeDecodeError:
                return _error(400, "the body is not valid JSON: it is not UTF-8 text")
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            try:
                events = payload_events(payload, now)
            except PayloadError as exc:
                return _error(400, f"not an Alertmanager v4 payload: {exc}", exc.field)
            if len(events) == 1:
                span.set_attribute(CORRELATION_ATTRIBUTE, events[0].correlation_id)
            span.set_attribute("alertmanager.alerts", len(events))
            try:
                outcome = await sink.publish(events)
            except Exception as exc:
                log.error("alerts not recorded", extra={"reason": type(exc).__name__})
                return _error(503, "the event log is unavailable; retry")
        event_ids = [r.event_id for r in outcome.results if not r.HasField("error")]
        if outcome.rejected_count:
            fields = rejected_fields(outcome)
            log.warning("alerts rejected", extra={"fields": fields})
            return JSONResponse(
                {
                    "error": "some alerts were rejected",
                    "accepted": outcome.accepted_count,
                    "rejected": fields,
                    "event_ids": event_ids,
                },
                status_code=400,
            )
        return JSONResponse({"accepted": outcome.accepted_count, "event_ids": event_ids})

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route(ALERTMANAGER_PATH, alertmanager, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service owns SIGTERM/SIGINT and stops us itself.
        yield


class WebhookServer:
    """Serves :func:`build_app` on uvicorn inside the running event loop."""

    def __init__(self, settings: Settings, sink: EdgePublisher) -> None:
        tokens = _Tokens(load_tokens(settings.auth_tokens_file)) if settings.auth_enabled else None
        self._app = build_app(sink, tokens)
        self._host = settings.host
        self._port = settings.ingest_webhook_port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        sock = listening_socket(self._host, self._port)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            http=HTTP_PARSER,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="webhooks")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the webhook server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("webhooks serving", extra={"port": self.port, "path": ALERTMANAGER_PATH})
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._task = None
