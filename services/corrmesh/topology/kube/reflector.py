"""List+watch of one kind in one cluster, in a thread of its own.

The loop, as client-go's reflector does it:

1. List in pages (``limit``/``continue``); hand the complete list over as one
   :class:`Replace`, so the graph never shows half of a relist.
2. Watch from the list's resourceVersion with bookmarks on, a server-side
   ``timeoutSeconds`` and a client-side read timeout a little longer, so a dead
   connection ends the watch instead of hanging it.
3. When a watch ends or breaks, watch again from the last resourceVersion
   seen (events and bookmarks move it); nothing is relisted.
4. On 410 Gone (an ERROR event with code 410, or HTTP 410) the version is too
   old to resume from: list again.

Errors back off exponentially (with jitter) and are reported as KindState
items: ``forbidden`` (401/403), ``unreachable``, ``error``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from corrmesh.topology.kube.client import ClusterClient, KubeApiError, KubeError, WatchStream
from corrmesh.topology.kube.inbox import Delta, Inbox, KindState, Replace
from corrmesh.topology.kube.kinds import METADATA_ACCEPT, METADATA_LIST_ACCEPT, ServedKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    """Timing of list+watch; tests shorten them."""

    #: Server-side watch timeout; each watch asks for a random value in [t, 2t).
    watch_timeout_seconds: float = 120.0
    #: Client-side silence allowed beyond the server's timeout.
    read_slack_seconds: float = 15.0
    #: Client-side read timeout of discovery and list requests.
    request_timeout_seconds: float = 60.0
    page_size: int = 500
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0


class ExpiredError(Exception):
    """The resourceVersion is too old (410 Gone): relist."""


class Reflector:
    """Keeps one kind of one cluster flowing into an inbox until stopped."""

    def __init__(
        self,
        cluster: str,
        client: ClusterClient,
        served: ServedKind,
        inbox: Inbox,
        options: WatchOptions,
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.served = served
        self.inbox = inbox
        self.options = options
        self.resource_version = ""
        #: Watches that ended in 410 Gone (each followed by a relist).
        self.expirations = 0
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._failing = False
        self._thread = threading.Thread(
            target=self._run, name=f"reflector-{cluster}-{served.kind}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Asks the thread to end and breaks its open watch, if any."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _state(self, state: str, detail: str = "") -> None:
        self._failing = state != "synced"
        self.inbox.put(KindState(self.cluster, self.served.kind, state, detail))

    def _run(self) -> None:
        backoff = self.options.backoff_initial_seconds
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                    self._state("synced", self.served.api_version)
                started = time.monotonic()
                if self._watch() or time.monotonic() - started > 1.0:
                    backoff = self.options.backoff_initial_seconds
                    continue
                # A watch the server ends at once, again and again: do not spin.
                self._stop.wait(self.options.backoff_initial_seconds)
                continue
            except ExpiredError:
                self.expirations += 1
                need_list = True
                log.info(
                    "watch expired; relisting",
                    extra={"cluster": self.cluster, "kind": self.served.kind},
                )
                continue
            except KubeApiError as exc:
                if exc.status in (401, 403):
                    self._state("forbidden", exc.message or exc.reason)
                    # Whatever was refused may have changed meanwhile: start over.
                    need_list = True
                else:
                    # A failed list is retried; a failed watch resumes where it was.
                    self._state("error", str(exc))
            except KubeError as exc:
                if self._stop.is_set():
                    return
                self._state("unreachable", str(exc))
            except Exception as exc:  # a bug must not end the sync of this kind for good
                log.exception(
                    "sync error", extra={"cluster": self.cluster, "kind": self.served.kind}
                )
                self._state("error", f"{type(exc).__name__}: {exc}")
                need_list = True
            log.warning(
                "sync failing",
                extra={"cluster": self.cluster, "kind": self.served.kind, "retry_in": backoff},
            )
            self._stop.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.options.backoff_max_seconds)

    def _list(self) -> None:
        accept = METADATA_LIST_ACCEPT if self.served.spec.metadata_only else "application/json"
        objects: list[dict[str, Any]] = []
        token = ""
        while True:
            query: list[tuple[str, str | int]] = [("limit", self.options.page_size)]
            if token:
                query.append(("continue", token))
            try:
                page = self.client.get_json(
                    self.served.path, query, accept, self.options.request_timeout_seconds
                )
            except KubeApiError as exc:
                if exc.status == 410 and token:
                    # The continue token expired mid-list: start the list over.
                    objects, token = [], ""
                    continue
                raise
            objects.extend(item for item in page.get("items") or () if isinstance(item, dict))
            metadata = page.get("metadata") or {}
            token = str(metadata.get("continue") or "")
            if not token:
                version = str(metadata.get("resourceVersion") or "")
                break
            if self._stop.is_set():
                return
        self.resource_version = version
        self.inbox.put(Replace(self.cluster, self.served, objects, version))

    def _watch(self) -> int:
        """Watches until the stream ends; returns how many events it carried."""
        timeout = int(self.options.watch_timeout_seconds * random.uniform(1.0, 2.0)) or 1
        accept = METADATA_ACCEPT if self.served.spec.metadata_only else "application/json"
        query: list[tuple[str, str | int]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout),
        ]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        try:
            stream = self.client.open_watch(
                self.served.path, query, accept, timeout + self.options.read_slack_seconds
            )
        except KubeApiError as exc:
            if exc.status == 410:
                raise ExpiredError from exc
            raise
        self._stream = stream
        if self._failing:  # the watch is back after a failure
            self._state("synced", self.served.api_version)
        count = 0
        try:
            for event in stream.events():
                if self._stop.is_set():
                    break
                self._handle(event)
                count += 1
        finally:
            self._stream = None
            stream.close()
        return count

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise ExpiredError
            raise KubeApiError(
                int(code or 500), str(obj.get("reason", "")), str(obj.get("message", ""))
            )
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            if version:
                self.resource_version = version
            return
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.inbox.put(Delta(self.cluster, self.served, str(kind), obj))
            if version:
                self.resource_version = version
