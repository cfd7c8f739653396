"""Quick check of RelateResources' speed in-process (not a test: run it by hand).

    .venv/bin/python -m tests.bench.bench_topology_relate

Builds a synthetic cluster (nodes, deployments with ReplicaSets and Pods,
Services, ConfigMaps, PVCs, declared dependencies), then times 1,000 pairs
through the servicer's handler, cold (fresh cache) and warm.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from corrmesh.runtime.streams import HeadNotifier
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key
from corrmesh.topology.relate import Relator
from corrmesh.topology.servicer import TopologyServicer
from corrmesh.v1 import event_pb2, topology_pb2

T = topology_pb2


def build(deployments: int = 300, pods_per: int = 5, nodes: int = 30) -> TopologyGraph:
    graph = TopologyGraph()
    rng = random.Random(7)

    def add(kind: str, name: str, uid: bool = True) -> Key:
        ref = event_pb2.ResourceRef(cluster="prod", kind=kind, namespace="shop", name=name)
        if uid:
            ref.uid = f"{kind}-{name}"
        return graph.upsert_resource(T.Resource(ref=ref))

    node_keys = [add("Node", f"worker-{i}") for i in range(nodes)]
    shared_config = add("ConfigMap", "shared")
    services = []
    for d in range(deployments):
        deployment = add("Deployment", f"app-{d}")
        replica_set = add("ReplicaSet", f"app-{d}-rs")
        graph.add_edge(deployment, replica_set, T.EDGE_TYPE_OWNER)
        svc = add("Service", f"app-{d}")
        services.append(svc)
        config = add("ConfigMap", f"app-{d}")
        for p in range(pods_per):
            pod = add("Pod", f"app-{d}-{p}")
            graph.add_edge(replica_set, pod, T.EDGE_TYPE_OWNER)
            graph.add_edge(rng.choice(node_keys), pod, T.EDGE_TYPE_NODE)
            graph.add_edge(svc, pod, T.EDGE_TYPE_SELECTOR)
            graph.add_edge(config, pod, T.EDGE_TYPE_CONFIG)
            graph.add_edge(shared_config, pod, T.EDGE_TYPE_CONFIG)  # a hub
    for svc in services:
        for target in rng.sample(services, 2):
            if target != svc:
                graph.add_edge(svc, target, T.EDGE_TYPE_DEPENDENCY)
    return graph


class _Context:
    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(status)


async def main() -> None:
    graph = build()
    keys = [k for k in graph.resources if graph.resources[k].ref.kind in ("Pod", "Service")]
    rng = random.Random(11)
    pairs = []
    for _ in range(1000):
        a, b = rng.sample(keys, 2)
        by_name = graph.resources[a].ref
        pairs.append(
            T.ResourcePair(
                a=event_pb2.ResourceRef(
                    kind=by_name.kind, namespace="shop", name=by_name.name, cluster="prod"
                ),
                b=graph.resources[b].ref,
            )
        )
    request = T.RelateResourcesRequest(pairs=pairs)
    servicer = TopologyServicer(graph, None, None, HeadNotifier(), asyncio.Event())  # type: ignore[arg-type]
    context: Any = _Context()
    print(f"graph: {len(graph.resources)} resources, {graph.edge_count()} edges; 1,000 pairs")
    for label in ("cold", "warm", "warm"):
        if label == "cold":
            servicer.relator = Relator(graph)
        start = time.perf_counter()
        response = await servicer.RelateResources(request, context)
        elapsed = (time.perf_counter() - start) * 1000
        kinds: dict[str, int] = {}
        for relation in response.relations:
            name = T.RelationKind.Name(relation.kind)
            kinds[name] = kinds.get(name, 0) + 1
        print(f"{label}: {elapsed:.2f} ms  {kinds}")


if __name__ == "__main__":
    asyncio.run(main())
