"""Records the estate from a real kube-apiserver for the loopback tier.

    .venv/bin/python -m tests.peers.kubernetes.record_estate

Starts the cached kube-apiserver (scripts/kube-apiserver.sh builds it once),
creates the estate of tests/support/topology_kube.py, and writes the
discovery documents and every synced collection, exactly as the server
sent them, to tests/support/topology_kube_recorded.json.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from corrmesh.topology.kube.client import ClusterClient, KubeApiError
from corrmesh.topology.kube.discovery import discover
from tests.support.topology_apiserver import binaries, start_apiserver
from tests.support.topology_kube import KubeAdmin, build_estate
from tests.support.topology_kube_server import RECORDED


def record(client: ClusterClient) -> dict[str, Any]:
    discovery: dict[str, Any] = {"/api": client.get_json("/api"), "/apis": client.get_json("/apis")}
    found = discover(client)
    for served in found.served.values():
        group = served.spec.group
        path = f"/apis/{group}/{served.version}" if group else f"/api/{served.version}"
        discovery.setdefault(path, client.get_json(path))
    # Group versions a newer kind version is looked for in, served or not here.
    for path in ("/apis/batch/v1", "/apis/discovery.k8s.io/v1"):
        with contextlib.suppress(KubeApiError):  # not served here: discovery must cope
            discovery.setdefault(path, client.get_json(path))
    collections: dict[str, Any] = {}
    for kind in ("Endpoints", *found.served):
        known = found.served.get(kind)
        path = known.path if known else "/api/v1/endpoints"
        items = client.get_json(path).get("items") or []
        collections[path] = [i for i in items if i["metadata"].get("namespace") != "kube-system"]
    return {"discovery": discovery, "collections": collections}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="corrmesh-k8s-") as directory:
        server = start_apiserver(Path(directory), binaries())
        try:
            admin = KubeAdmin(server.kubeconfig())
            build_estate(admin)
            document = record(admin.cluster)
            admin.close()
        finally:
            server.stop()
    RECORDED.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {RECORDED}")


if __name__ == "__main__":
    main()
