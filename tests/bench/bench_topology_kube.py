"""Topology on a 10,000-Pod estate built from JSON recorded from a real kube-apiserver.

    .venv/bin/python -m tests.bench.bench_topology_kube [--pods 10000]

Reports, in-process and through the loopback list/watch server:

- time to the first full graph (every kind listed and applied);
- watch events applied per second (MODIFIED Pods, changes logged to SQLite);
- p50/p99 of GetImpact on a Node and of RelateResources for 1,000 pairs,
  through the servicer's handlers, after a few unmeasured calls and with the
  garbage-collector thresholds the Topology server sets;

each beside a baseline measured in the same run (decoding the same JSON and
nothing else), and the targets: first graph < 5 s, 10,000 events/s,
GetImpact p99 < 5 ms, RelateResources (1,000 pairs) < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from corrmesh.runtime.gc_tuning import tune_garbage_collection
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.kube import registry
from corrmesh.topology.kube.cluster import ClusterConfig
from corrmesh.topology.kube.inbox import Delta, Item, Replace
from corrmesh.topology.kube.kinds import KINDS, ServedKind
from corrmesh.topology.kube.reflector import WatchOptions
from corrmesh.topology.servicer import TopologyServicer
from corrmesh.topology.store import TopologyStore
from corrmesh.topology.writer import TopologyWriter
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology import topology_server
from tests.support.topology_kube_server import (
    LoopbackApiServer,
    kube_clusters_setting,
    load_recorded,
)

T = topology_pb2
SPECS = {spec.kind: spec for spec in KINDS}
PODS = "/api/v1/pods"
PODS_PER_DEPLOYMENT = 10
NODES = 100
#: Unmeasured calls before each latency is sampled (first calls warm caches up).
WARMUP = 3


def _template(collections: dict[str, list[dict[str, Any]]], path: str, name: str) -> dict[str, Any]:
    for item in collections[path]:
        if item["metadata"]["name"] == name:
            clean = copy.deepcopy(item)
            clean["metadata"].pop("managedFields", None)
            return clean
    raise KeyError(name)


def large_estate(pods: int) -> dict[str, list[dict[str, Any]]]:
    """``pods`` Pods in Deployments of 10 (ReplicaSet, Service, EndpointSlice,
    ConfigMap, Secret each) on 100 Nodes, cloned from the recorded objects."""
    recorded = load_recorded()["collections"]
    out: dict[str, list[dict[str, Any]]] = {path: [] for path in recorded}
    node_t = _template(recorded, "/api/v1/nodes", "worker-1")
    pod_t = _template(recorded, PODS, "payment-5d9c7-0")
    dep_t = _template(recorded, "/apis/apps/v1/deployments", "payment")
    rs_t = _template(recorded, "/apis/apps/v1/replicasets", "payment-5d9c7")
    svc_t = _template(recorded, "/api/v1/services", "payment-svc")
    slice_path = "/apis/discovery.k8s.io/v1beta1/endpointslices"
    slice_t = _template(recorded, slice_path, "payment-svc-abcde")
    cm_t = _template(recorded, "/api/v1/configmaps", "payment-config")
    secret_t = _template(recorded, "/api/v1/secrets", "db-credentials")
    rng = random.Random(5)

    def clone(template: dict[str, Any], name: str, uid: str) -> dict[str, Any]:
        obj = copy.deepcopy(template)
        obj["metadata"].update(name=name, uid=uid)
        return obj

    for n in range(NODES):
        out["/api/v1/nodes"].append(clone(node_t, f"node-{n}", f"uid-node-{n}"))
    for d in range(pods // PODS_PER_DEPLOYMENT):
        app = f"app-{d}"
        labels = {"app": app}
        dep = clone(dep_t, app, f"uid-dep-{d}")
        dep["metadata"]["labels"] = labels
        out["/apis/apps/v1/deployments"].append(dep)
        rs = clone(rs_t, f"{app}-rs", f"uid-rs-{d}")
        rs["metadata"]["ownerReferences"][0].update(name=app, uid=dep["metadata"]["uid"])
        out["/apis/apps/v1/replicasets"].append(rs)
        out["/api/v1/configmaps"].append(clone(cm_t, f"{app}-config", f"uid-cm-{d}"))
        out["/api/v1/secrets"].append(clone(secret_t, f"{app}-db", f"uid-secret-{d}"))
        svc = clone(svc_t, f"{app}-svc", f"uid-svc-{d}")
        svc["spec"]["selector"] = labels
        svc["spec"].pop("clusterIP", None)
        out["/api/v1/services"].append(svc)
        endpoint_slice = clone(slice_t, f"{app}-svc-x", f"uid-slice-{d}")
        endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] = svc["metadata"]["name"]
        slice_owner = endpoint_slice["metadata"]["ownerReferences"][0]
        slice_owner.update(name=f"{app}-svc", uid=f"uid-svc-{d}")
        endpoint_slice["endpoints"] = []
        for p in range(PODS_PER_DEPLOYMENT):
            name = f"{app}-rs-{p}"
            pod = clone(pod_t, name, f"uid-pod-{d}-{p}")
            pod["metadata"]["labels"] = labels
            pod_owner = pod["metadata"]["ownerReferences"][0]
            pod_owner.update(name=rs["metadata"]["name"], uid=rs["metadata"]["uid"])
            pod["spec"]["nodeName"] = f"node-{rng.randrange(NODES)}"
            pod["spec"]["volumes"][0]["configMap"]["name"] = f"{app}-config"
            for container in pod["spec"]["containers"]:
                for env in container.get("env", ()):
                    env["valueFrom"]["secretKeyRef"]["name"] = f"{app}-db"
            out[PODS].append(pod)
            target = {"kind": "Pod", "namespace": "shop", "name": name, "uid": f"uid-pod-{d}-{p}"}
            endpoint_slice["endpoints"].append(
                {"addresses": [f"10.1.{d % 250}.{p}"], "targetRef": target}
            )
        out[slice_path].append(endpoint_slice)
    return out


def served_of(path: str) -> ServedKind:
    parts = path.strip("/").split("/")
    resource = parts[-1]
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    for spec in KINDS:
        if spec.group == group and spec.resource == resource:
            return ServedKind(spec, version)
    raise KeyError(path)


def modified_pods(estate: dict[str, list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """``count`` MODIFIED Pods: a restart counted, as a crash-looping estate sends."""
    pods = estate[PODS]
    events = []
    for index in range(count):
        pod = copy.deepcopy(pods[index % len(pods)])
        pod["metadata"]["resourceVersion"] = str(10_000_000 + index)
        pod.setdefault("status", {})["containerStatuses"] = [{"name": "c", "restartCount": index}]
        events.append(pod)
    return events


class _Context:
    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(status)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def in_process(
    estate: dict[str, list[dict[str, Any]]], events: list[dict[str, Any]], directory: Path
) -> dict[str, float]:
    results: dict[str, float] = {}
    tune_garbage_collection()  # as the Topology server does
    bodies = {path: json.dumps({"items": items}).encode() for path, items in estate.items()}
    started = time.perf_counter()
    for body in bodies.values():
        json.loads(body)
    results["decode_lists"] = time.perf_counter() - started

    store = TopologyStore(f"sqlite:///{directory / 'bench.db'}")
    store.migrate()
    graph = TopologyGraph()
    writer = TopologyWriter(graph, store, HeadNotifier())
    sync = registry.KubeSync([ClusterConfig("bench", "-")], graph, writer, None)
    started = time.perf_counter()
    items: list[Item] = [
        Replace("bench", served_of(path), json.loads(body)["items"], "1")
        for path, body in bodies.items()
    ]
    await writer.apply_observed(lambda: sync._apply(items))
    await writer.flush()
    results["first_graph"] = time.perf_counter() - started
    results["resources"] = len(graph.resources)
    results["edges"] = graph.edge_count()

    lines = [json.dumps({"type": "MODIFIED", "object": pod}).encode() for pod in events]
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    results["decode_events"] = time.perf_counter() - started
    pods = served_of(PODS)
    started = time.perf_counter()
    for first in range(0, len(lines), 1000):
        batch: list[Item] = [
            Delta("bench", pods, "MODIFIED", json.loads(line)["object"])
            for line in lines[first : first + 1000]
        ]
        await writer.apply_observed(lambda batch=batch: sync._apply(batch))  # type: ignore[misc]
    await writer.flush()  # every change in the change log, as WatchTopology serves it
    results["apply_events"] = time.perf_counter() - started

    servicer = TopologyServicer(graph, writer, store, HeadNotifier(), asyncio.Event())
    context: Any = _Context()
    impact_samples = []
    for n in range(-WARMUP, 200):
        node = event_pb2.ResourceRef(cluster="bench", kind="Node", name=f"node-{n % NODES}")
        start = time.perf_counter()
        await servicer.GetImpact(T.GetImpactRequest(ref=node), context)
        if n >= 0:
            impact_samples.append((time.perf_counter() - start) * 1000)
    results["impact_p50"], results["impact_p99"] = percentiles(impact_samples)

    keys = [k for k, r in graph.resources.items() if r.ref.kind in ("Pod", "Service", "Deployment")]
    rng = random.Random(3)
    relate_samples = []
    for round_ in range(-WARMUP, 50):
        pairs = []
        for _pair in range(1000):
            a, b = rng.sample(keys, 2)
            pairs.append(T.ResourcePair(a=graph.resources[a].ref, b=graph.resources[b].ref))
        request = T.RelateResourcesRequest(pairs=pairs)
        start = time.perf_counter()
        await servicer.RelateResources(request, context)
        if round_ >= 0:
            relate_samples.append((time.perf_counter() - start) * 1000)
    results["relate_p50"], results["relate_p99"] = percentiles(relate_samples)
    store.close()
    return results


async def through_loopback(
    estate: dict[str, list[dict[str, Any]]], events: list[dict[str, Any]], directory: Path
) -> dict[str, float]:
    recorded = load_recorded()
    server = LoopbackApiServer(recorded["discovery"], estate)
    server.bookmark_interval = 3600
    server.start()
    results: dict[str, float] = {}
    registry.DEFAULT_OPTIONS = WatchOptions(watch_timeout_seconds=300)
    try:
        setting = kube_clusters_setting(directory, {"bench": server.url})
        started = time.perf_counter()
        async with topology_server(f"sqlite:///{directory / 'loop.db'}", kube_clusters=setting) as (
            app,
            _stub,
        ):
            assert app.kube is not None
            await app.kube.wait_until({"synced"}, 120)
            results["first_graph"] = time.perf_counter() - started
            applied = app.kube.applied
            # The burst is staged (copied, versioned, encoded) before the clock
            # starts, as a real server would have it; it reaches the watch at once.
            with server.held():
                await asyncio.to_thread(server.apply_many, PODS, events)
                started = time.perf_counter()
            await app.kube.wait_applied(applied + len(events), 120)
            await app.writer.flush()  # and in the change log
            results["apply_events"] = time.perf_counter() - started
    finally:
        server.stop()
    return results


def run(console: Console, pods: int = 10_000, events_count: int = 10_000) -> None:
    """Builds the estate, measures both ways and prints the table (``make bench``)."""
    estate = large_estate(pods)
    events = modified_pods(estate, events_count)
    with tempfile.TemporaryDirectory(prefix="corrmesh-topology-bench-") as directory:
        local = asyncio.run(in_process(estate, events, Path(directory)))
        loop = asyncio.run(through_loopback(estate, events, Path(directory)))
    console.print(
        f"estate: {pods:,} pods; graph {int(local['resources']):,} resources, "
        f"{int(local['edges']):,} edges; {events_count:,} watch events"
    )
    table = Table(title="Topology on Kubernetes: in-process and through the loopback server")
    for column in ("measure", "in-process", "loopback", "baseline (JSON decode only)", "target"):
        table.add_column(column, justify="right")
    rate = events_count / local["apply_events"]
    loop_rate = events_count / loop["apply_events"]
    table.add_row(
        "first full graph (s)",
        f"{local['first_graph']:.2f}",
        f"{loop['first_graph']:.2f}",
        f"{local['decode_lists']:.2f} (x{local['first_graph'] / local['decode_lists']:.1f})",
        "< 5",
    )
    table.add_row(
        "watch events applied / s",
        f"{rate:,.0f}",
        f"{loop_rate:,.0f}",
        f"{events_count / local['decode_events']:,.0f}",
        "≥ 10,000",
    )
    impact = f"{local['impact_p50']:.2f} / {local['impact_p99']:.2f}"
    relate = f"{local['relate_p50']:.2f} / {local['relate_p99']:.2f}"
    table.add_row("GetImpact on a Node p50 / p99 (ms)", impact, "", "", "p99 < 5")
    table.add_row("RelateResources 1,000 pairs p50 / p99 (ms)", relate, "", "", "< 10")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_topology_kube")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    run(Console(), args.pods, args.events)


if __name__ == "__main__":
    main()
