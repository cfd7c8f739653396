"""One cluster: its configuration, connection, discovery and reflectors.

``settings.kube_clusters`` names the clusters, comma-separated, each as
``name=/path/to/kubeconfig`` (current context), ``name=/path#context`` or
``name=in-cluster`` (the pod's service account).
"""

from __future__ import annotations

import logging
import random
import re
import threading
from dataclasses import dataclass

from corrmesh.topology.kube.client import ClusterClient, KubeApiError, KubeError
from corrmesh.topology.kube.discovery import discover
from corrmesh.topology.kube.inbox import Inbox, KindState
from corrmesh.topology.kube.reflector import Reflector, WatchOptions

log = logging.getLogger(__name__)

IN_CLUSTER = "in-cluster"
#: KindState.kind of a state about the whole cluster.
CLUSTER_LEVEL = ""
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$")


class ClusterConfigError(ValueError):
    """``kube_clusters`` is malformed."""


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    kubeconfig: str = ""
    context: str = ""

    @property
    def in_cluster(self) -> bool:
        return not self.kubeconfig


def parse_clusters(text: str) -> list[ClusterConfig]:
    """The clusters of a ``kube_clusters`` setting; raises ClusterConfigError."""
    configs: list[ClusterConfig] = []
    for index, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, where = part.partition("=")
        name, where = name.strip(), where.strip()
        if not sep or not where:
            raise ClusterConfigError(
                f"kube_clusters[{index}]: expected name=kubeconfig[#context] or name=in-cluster"
            )
        if not _NAME.match(name):
            raise ClusterConfigError(f"kube_clusters[{index}]: {name!r} is not a valid name")
        if any(c.name == name for c in configs):
            raise ClusterConfigError(f"kube_clusters[{index}]: cluster {name!r} named twice")
        if where == IN_CLUSTER:
            configs.append(ClusterConfig(name))
        else:
            path, _, context = where.partition("#")
            configs.append(ClusterConfig(name, path, context))
    return configs


class ClusterSync:
    """Connects, discovers (retrying while the cluster is away), then runs one
    reflector per served kind; all of it reports into the shared inbox."""

    def __init__(self, config: ClusterConfig, inbox: Inbox, options: WatchOptions) -> None:
        self.config = config
        self.inbox = inbox
        self.options = options
        self.client: ClusterClient | None = None
        self.reflectors: list[Reflector] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"cluster-{config.name}", daemon=True
        )

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._lock:
            reflectors = list(self.reflectors)
        for reflector in reflectors:
            reflector.stop()
        for reflector in reflectors:
            reflector.join(timeout)
        self._thread.join(timeout)
        if self.client is not None:
            self.client.close()

    def _state(self, state: str, detail: str = "", kind: str = CLUSTER_LEVEL) -> None:
        self.inbox.put(KindState(self.name, kind, state, detail))

    def _connect(self) -> ClusterClient:
        if self.config.in_cluster:
            return ClusterClient.in_cluster()
        return ClusterClient.from_kubeconfig(self.config.kubeconfig, self.config.context)

    def _run(self) -> None:
        try:
            self.client = self._connect()
        except Exception as exc:  # the config loaders raise many types; all mean "cannot start"
            log.error("cluster config unusable", extra={"cluster": self.name})
            self._state("error", f"cannot load cluster config: {exc}")
            return
        self._state("connecting", self.client.host)
        delay = self.options.backoff_initial_seconds
        while not self._stop.is_set():
            try:
                discovery = discover(self.client, timeout=self.options.request_timeout_seconds)
                break
            except KubeApiError as exc:
                state = "forbidden" if exc.status in (401, 403) else "error"
                self._state(state, f"discovery: {exc}")
            except KubeError as exc:
                self._state("unreachable", str(exc))
            log.warning(
                "cluster discovery failing", extra={"cluster": self.name, "retry_in": delay}
            )
            self._stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.options.backoff_max_seconds)
        else:
            return
        for kind, reason in discovery.skipped.items():
            self._state("skipped", reason, kind)
        for served in discovery.served.values():
            self._state("listing", served.api_version, served.kind)
        # Only now: every kind is known, so the cluster cannot look synced early.
        self._state("discovered", self.client.host)
        with self._lock:
            if self._stop.is_set():
                return
            for served in discovery.served.values():
                reflector = Reflector(self.name, self.client, served, self.inbox, self.options)
                self.reflectors.append(reflector)
                reflector.start()
