"""A loopback server speaking the Kubernetes REST list/watch protocol.

It serves discovery documents and objects recorded from the real
kube-apiserver (``topology_kube_recorded.json``) over plain HTTP, with the
same semantics Topology relies on: paged lists (``limit``/``continue``,
``resourceVersion`` in the list's metadata), watches from a resourceVersion
(chunked JSON lines, ``timeoutSeconds``, BOOKMARK events when asked), an
ERROR event with a 410 Status for a version older than the last compaction,
PartialObjectMetadata(List) when the Accept header asks for it, and 403 for
a collection a test forbids. Tests change objects through :meth:`apply` and
:meth:`remove`, which stream to open watches as a real server would.

This module is the server's state (collections, versions, the watch log)
and the helpers tests start it with; the HTTP listener and request handler
are in :mod:`tests.support.topology_kube_http`.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corrmesh.topology.kube import registry
from corrmesh.topology.kube.reflector import WatchOptions
from tests.support.topology_kube import write_kubeconfig
from tests.support.topology_kube_http import partial_metadata, serve, status_document

RECORDED = Path(__file__).with_name("topology_kube_recorded.json")


def load_recorded() -> dict[str, Any]:
    """{"discovery": {path: document}, "collections": {path: [objects]}}."""
    document: dict[str, Any] = json.loads(RECORDED.read_text(encoding="utf-8"))
    return document


class LoopbackApiServer:
    """The state behind the loopback server: collections, versions, a watch log."""

    def __init__(
        self, discovery: dict[str, Any], collections: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.discovery = discovery
        self._lock = threading.Condition()
        self.version = 1000
        self.compacted = 0
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        #: (version, collection path, event type, object, the event as a JSON line).
        self.log: list[tuple[int, str, str, dict[str, Any], bytes]] = []
        #: While set (see :meth:`held`), watchers see no event past this version.
        self._held_at: int | None = None
        self.forbidden: set[str] = set()
        #: (path with query, Accept header) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        self.bookmark_interval = 0.5
        self.generation = 0
        for path, items in collections.items():
            bucket = self.objects.setdefault(path, {})
            for item in items:
                obj = copy.deepcopy(item)
                self.version += 1
                obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
                bucket[self._id(obj)] = obj
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    @staticmethod
    def _id(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata", {})
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    # ---- changes, as a test makes them ------------------------------------

    def apply(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Creates or replaces ``obj`` in collection ``path``; watchers see it."""
        with self._lock:
            obj = copy.deepcopy(obj)
            self.version += 1
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
            bucket = self.objects.setdefault(path, {})
            kind = "MODIFIED" if self._id(obj) in bucket else "ADDED"
            bucket[self._id(obj)] = obj
            self._log(path, kind, obj)
            self._lock.notify_all()
            return obj

    def _log(self, path: str, kind: str, obj: dict[str, Any]) -> None:
        # Encoded once here, not once per watcher: the stream then costs the
        # server (in the test's process) as little as a real one would.
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        self.log.append((self.version, path, kind, obj, line))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Changes made inside reach watchers only when the block ends, all at
        once: a burst staged before a measurement starts."""
        with self._lock:
            self._held_at = self.version
        try:
            yield
        finally:
            with self._lock:
                self._held_at = None
                self._lock.notify_all()

    def apply_many(self, path: str, objects: list[dict[str, Any]]) -> None:
        """Applies several objects under one lock (a burst of watch events)."""
        with self._lock:
            bucket = self.objects.setdefault(path, {})
            for item in objects:
                obj = copy.deepcopy(item)
                self.version += 1
                obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
                kind = "MODIFIED" if self._id(obj) in bucket else "ADDED"
                bucket[self._id(obj)] = obj
                self._log(path, kind, obj)
            self._lock.notify_all()

    def remove(self, path: str, namespace: str, name: str) -> None:
        with self._lock:
            obj = self.objects.get(path, {}).pop(f"{namespace}/{name}")
            self.version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self._log(path, "DELETED", obj)
            self._lock.notify_all()

    def compact(self) -> None:
        """Forgets the watch log: resuming from any older version gets 410."""
        with self._lock:
            self.compacted = self.version
            self.log.clear()

    def rewrite(self, path: str, objects: list[dict[str, Any]]) -> None:
        """Replaces a collection while every watch is cut off, then compacts:
        the changes are lost to the watchers, who must relist to see them
        (what a cluster does to a client that was away too long)."""
        with self._lock:
            bucket: dict[str, dict[str, Any]] = {}
            for item in objects:
                obj = copy.deepcopy(item)
                self.version += 1
                obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
                bucket[self._id(obj)] = obj
            self.objects[path] = bucket
            self.generation += 1
            self.compacted = self.version
            self.log.clear()
            self._lock.notify_all()

    def break_watches(self) -> None:
        """Ends every open watch stream (their clients resume from their version)."""
        with self._lock:
            self.generation += 1
            self._lock.notify_all()

    def get(self, path: str, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.objects[path][f"{namespace}/{name}"])

    # ---- HTTP ----------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._server, self._thread = serve(self)

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def list_page(self, path: str, limit: int, start: int, metadata_only: bool) -> dict[str, Any]:
        with self._lock:
            items = sorted(self.objects.get(path, {}).values(), key=self._id)
            page = items[start : start + limit] if limit else items[start:]
            end = start + len(page)
            version = str(self.version)
        if metadata_only:
            page = [partial_metadata(o) for o in page]
        metadata: dict[str, Any] = {"resourceVersion": version}
        if end < len(items):
            metadata["continue"] = str(end)
        return {
            "kind": "PartialObjectMetadataList" if metadata_only else "List",
            "apiVersion": "meta.k8s.io/v1" if metadata_only else "v1",
            "metadata": metadata,
            "items": page,
        }

    def watch_events(
        self, path: str, since: int, timeout: float, bookmarks: bool
    ) -> Iterator[list[tuple[dict[str, Any], bytes | None]]]:
        """Batches of (event, its JSON line when pre-encoded) after ``since`` until
        ``timeout``; a 410 ERROR when compacted past it."""
        deadline = time.monotonic() + timeout
        if since < self.compacted:
            error = {
                "type": "ERROR",
                "object": status_document(410, "Expired", "too old resource version"),
            }
            yield [(error, None)]
            return
        position = since
        last_bookmark = time.monotonic()
        generation = self.generation
        while not self._closing and generation == self.generation:
            with self._lock:
                current = self.version if self._held_at is None else self._held_at
                first = bisect.bisect_right(self.log, position, key=lambda entry: entry[0])
                pending: list[tuple[int, dict[str, Any], bytes | None]] = [
                    (version, {"type": kind, "object": obj}, line)
                    for version, where, kind, obj, line in self.log[first:]
                    if where == path and version <= current
                ]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._lock.wait(min(remaining, self.bookmark_interval))
            if pending:
                position = pending[-1][0]
                yield [(event, line) for _version, event, line in pending]
            if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                # Everything up to the version read above has been sent.
                last_bookmark = time.monotonic()
                position = max(position, current)
                bookmark = {"metadata": {"resourceVersion": str(position)}}
                yield [({"type": "BOOKMARK", "object": bookmark}, None)]


@contextmanager
def loopback_apiserver(
    collections: dict[str, list[dict[str, Any]]] | None = None,
) -> Iterator[LoopbackApiServer]:
    """A started loopback server with the recorded discovery and ``collections``
    (default: the recorded estate)."""
    recorded = load_recorded()
    server = LoopbackApiServer(
        recorded["discovery"], recorded["collections"] if collections is None else collections
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_new_uids(
    collections: dict[str, list[dict[str, Any]]], tag: str
) -> dict[str, list[dict[str, Any]]]:
    """A copy of ``collections`` whose uids (and every reference to them) carry
    ``tag``: the same estate as another cluster would hold it."""
    text = json.dumps(collections)
    for items in collections.values():
        for item in items:
            uid = item.get("metadata", {}).get("uid")
            if uid:
                text = text.replace(uid, f"{uid[: -len(tag)]}{tag}")
    result: dict[str, list[dict[str, Any]]] = json.loads(text)
    return result


def kube_clusters_setting(directory: Path, servers: dict[str, str], token: str = "t") -> str:
    """A ``kube_clusters`` value naming each cluster's API server by URL, through
    a kubeconfig written to ``directory``."""
    parts = []
    for name, url in servers.items():
        path = write_kubeconfig(directory / f"kubeconfig-{name}", url, token, name=name)
        parts.append(f"{name}={path}")
    return ",".join(parts)


@pytest.fixture
def quick_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short watches and back-offs, so resuming and relisting happen within a test
    (import it into a test module or conftest, with autouse where wanted)."""
    monkeypatch.setattr(
        registry,
        "DEFAULT_OPTIONS",
        WatchOptions(
            watch_timeout_seconds=1.0,
            read_slack_seconds=5.0,
            backoff_initial_seconds=0.05,
            backoff_max_seconds=0.2,
        ),
    )
