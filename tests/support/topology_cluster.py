"""A small cluster graph shared by the Topology unit tests.

Node worker-2 -NODE-> Pods web-1, web-2 <-OWNER- ReplicaSet web-abc <-OWNER- Deployment web
Service web -SELECTOR-> web-1, web-2;  ConfigMap web-config -CONFIG-> web-1, web-2
Node worker-1 -NODE-> Pods mysql-0, cache-0
Deployment mysql -OWNER-> ReplicaSet mysql-xyz -OWNER-> Pod mysql-0
Service mysql -SELECTOR-> mysql-0;  PVC data-mysql-0 -VOLUME-> mysql-0
declared (no uids): Service api -DEPENDENCY-> Deployment mysql,
                    Service frontend -DEPENDENCY-> Service api and -> Service web
Pod batch-1: alone.
"""

from __future__ import annotations

from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import Key
from corrmesh.v1 import event_pb2, topology_pb2

OWNER = topology_pb2.EDGE_TYPE_OWNER
SELECTOR = topology_pb2.EDGE_TYPE_SELECTOR
CONFIG = topology_pb2.EDGE_TYPE_CONFIG
VOLUME = topology_pb2.EDGE_TYPE_VOLUME
NODE = topology_pb2.EDGE_TYPE_NODE
DEPENDENCY = topology_pb2.EDGE_TYPE_DEPENDENCY

KUBERNETES = [
    ("Node", "", "worker-1"),
    ("Node", "", "worker-2"),
    ("Deployment", "shop", "web"),
    ("ReplicaSet", "shop", "web-abc"),
    ("Pod", "shop", "web-1"),
    ("Pod", "shop", "web-2"),
    ("Service", "shop", "web"),
    ("ConfigMap", "shop", "web-config"),
    ("Deployment", "shop", "mysql"),
    ("ReplicaSet", "shop", "mysql-xyz"),
    ("Pod", "shop", "mysql-0"),
    ("Pod", "shop", "cache-0"),
    ("Service", "shop", "mysql"),
    ("PersistentVolumeClaim", "shop", "data-mysql-0"),
    ("Pod", "shop", "batch-1"),
]
DECLARED = [("Service", "shop", "api"), ("Service", "shop", "frontend")]


def uid_of(kind: str, name: str) -> str:
    return f"uid-{kind.lower()}-{name}"


def kref(kind: str, name: str, namespace: str = "shop") -> event_pb2.ResourceRef:
    """A ref by name only (no uid), as a user would type it."""
    return event_pb2.ResourceRef(cluster="prod", kind=kind, namespace=namespace, name=name)


def build_cluster() -> tuple[TopologyGraph, dict[str, Key]]:
    """The graph above and its keys by "Kind/name"."""
    graph = TopologyGraph()
    keys: dict[str, Key] = {}
    for kind, namespace, name in KUBERNETES:
        ref = kref(kind, name, namespace)
        ref.uid = uid_of(kind, name)
        resource = topology_pb2.Resource(
            ref=ref,
            origin=topology_pb2.RESOURCE_ORIGIN_KUBERNETES,
            labels={"app": name.split("-")[0]},
        )
        keys[f"{kind}/{name}"] = graph.upsert_resource(resource)
    for kind, namespace, name in DECLARED:
        resource = topology_pb2.Resource(
            ref=kref(kind, name, namespace), origin=topology_pb2.RESOURCE_ORIGIN_DECLARED
        )
        keys[f"{kind}/{name}"] = graph.upsert_resource(resource)
    edges = [
        ("Node/worker-2", "Pod/web-1", NODE),
        ("Node/worker-2", "Pod/web-2", NODE),
        ("Deployment/web", "ReplicaSet/web-abc", OWNER),
        ("ReplicaSet/web-abc", "Pod/web-1", OWNER),
        ("ReplicaSet/web-abc", "Pod/web-2", OWNER),
        ("Service/web", "Pod/web-1", SELECTOR),
        ("Service/web", "Pod/web-2", SELECTOR),
        ("ConfigMap/web-config", "Pod/web-1", CONFIG),
        ("ConfigMap/web-config", "Pod/web-2", CONFIG),
        ("Node/worker-1", "Pod/mysql-0", NODE),
        ("Node/worker-1", "Pod/cache-0", NODE),
        ("Deployment/mysql", "ReplicaSet/mysql-xyz", OWNER),
        ("ReplicaSet/mysql-xyz", "Pod/mysql-0", OWNER),
        ("Service/mysql", "Pod/mysql-0", SELECTOR),
        ("PersistentVolumeClaim/data-mysql-0", "Pod/mysql-0", VOLUME),
        ("Service/api", "Deployment/mysql", DEPENDENCY),
        ("Service/frontend", "Service/api", DEPENDENCY),
        ("Service/frontend", "Service/web", DEPENDENCY),
    ]
    for source, target, edge_type in edges:
        assert graph.add_edge(keys[source], keys[target], edge_type)
    return graph, keys
