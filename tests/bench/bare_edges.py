"""Baselines for the edge bench: receivers that accept and do nothing else.

``python -m tests.bench.bare_edges dicom PORT``: a pynetdicom C-STORE SCP built
exactly like Ingest's (same AE setup, contexts, PDU size, TCP_NODELAY, no
per-PDU logging) whose handler answers success at once.
``python -m tests.bench.bare_edges webhook PORT``: uvicorn + Starlette, as
Ingest runs them (same HTTP parser), with a route that reads the body and answers 200.
"""

from __future__ import annotations

import signal
import sys
import threading

import uvicorn
from pynetdicom import evt
from pynetdicom.events import Event as DicomEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corrmesh.ingest.dicom_scp import make_storage_ae, resolve_sop_classes, start_storage_server
from corrmesh.ingest.webhooks import ALERTMANAGER_PATH
from corrmesh.runtime.settings import INGEST_DICOM_AE_TITLE
from corrmesh.runtime.web import HTTP_PARSER, listening_socket


def _store(_event: DicomEvent) -> int:
    return 0x0000


def serve_dicom(port: int) -> None:
    ae = make_storage_ae(INGEST_DICOM_AE_TITLE, resolve_sop_classes(()))
    server = start_storage_server(ae, "127.0.0.1", port, [(evt.EVT_C_STORE, _store)])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.shutdown()


def serve_webhook(port: int) -> None:
    async def receive(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"received": len(body)})

    app = Starlette(routes=[Route(ALERTMANAGER_PATH, receive, methods=["POST"])])
    config = uvicorn.Config(
        app,
        http=HTTP_PARSER,  # the parser Ingest's webhook uses
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[listening_socket("127.0.0.1", port)])


if __name__ == "__main__":
    kind, port_text = sys.argv[1], sys.argv[2]
    {"dicom": serve_dicom, "webhook": serve_webhook}[kind](int(port_text))
