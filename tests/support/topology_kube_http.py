"""The HTTP side of the loopback kube-apiserver (:mod:`tests.support.topology_kube_server`).

A threaded listener on a free loopback port whose handler routes each GET
to the server's state: discovery documents, 403 for a forbidden collection,
404 for an unknown path, paged lists, and watches written as chunked JSON
lines. Also the documents both sides build: Status bodies and the
PartialObjectMetadata view of an object.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    from tests.support.topology_kube_server import LoopbackApiServer

#: Largest chunk of a watch stream (a few events of a burst, or one large one).
CHUNK_BYTES = 64 * 1024


def status_document(code: int, reason: str, message: str) -> dict[str, Any]:
    """A failure Status document, as the API server sends with an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as PartialObjectMetadata (what an Accept header can ask for)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def serve(state: LoopbackApiServer) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A listener on a free loopback port answering from ``state``, and the
    daemon thread serving it (stop it with ``shutdown`` and ``server_close``)."""

    class Handler(_Handler):
        server_state = state

    server = _Listener(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


class _Listener(ThreadingHTTPServer):
    # A real API server's backlog: every reflector re-watching at once must
    # not meet a connect timeout (the standard library's default is 5).
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    server_state: LoopbackApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send_json(self, code: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server_state
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state.requests.append((self.path, self.headers.get("Accept", "")))
        if url.path in state.discovery:
            self._send_json(200, state.discovery[url.path])
            return
        if url.path in state.forbidden:
            self._send_json(403, status_document(403, "Forbidden", f"{url.path} is forbidden"))
            return
        if url.path not in state.objects and not any(
            url.path == p for p in _collection_paths(state.discovery)
        ):
            self._send_json(404, status_document(404, "NotFound", f"{url.path} not found"))
            return
        metadata_only = "as=PartialObjectMetadata" in self.headers.get("Accept", "")
        if query.get("watch") in ("true", "1"):
            self._watch(url.path, query, metadata_only)
            return
        limit = int(query.get("limit", "0") or 0)
        start = int(query.get("continue", "0") or 0)
        self._send_json(200, state.list_page(url.path, limit, start, metadata_only))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, path: str, query: dict[str, str], metadata_only: bool) -> None:
        since = int(query.get("resourceVersion") or self.server_state.version)
        timeout = float(query.get("timeoutSeconds", "60"))
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            batches = self.server_state.watch_events(path, since, timeout, bookmarks)
            for batch in batches:
                # Events waiting together go out together, in chunks of up to
                # CHUNK_BYTES, as a real server's buffered writer sends them.
                lines: list[bytes] = []
                size = 0
                for event, line in batch:
                    if metadata_only and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        event = {"type": event["type"], "object": partial_metadata(event["object"])}
                        line = None
                    if line is None:
                        line = json.dumps(event).encode() + b"\n"
                    lines.append(line)
                    size += len(line)
                    if size >= CHUNK_BYTES:
                        self._chunk(b"".join(lines))
                        lines, size = [], 0
                if lines:
                    self._chunk(b"".join(lines))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        self.close_connection = True


def _collection_paths(discovery: dict[str, Any]) -> Iterator[str]:
    for path, document in discovery.items():
        if document.get("kind") == "APIResourceList":
            for resource in document.get("resources", ()):
                if "/" not in resource.get("name", ""):
                    yield f"{path}/{resource['name']}"
