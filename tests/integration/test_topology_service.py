"""TopologyService over gRPC on SQLite and PostgreSQL: declared dependencies and queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrmesh.runtime.clients import open_channel
from corrmesh.topology import client
from corrmesh.topology.declared import DependenciesFileError
from corrmesh.topology.server import TopologyApp
from corrmesh.topology.validation import MAX_PAIRS
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc
from tests.support.inprocess import running
from tests.support.topology import dependency, names, ref, service, topology_server
from tests.support.topology_cluster import build_cluster, kref

R = topology_pb2.RelationKind
CHAIN = [
    dependency(service("frontend"), service("api"), "HTTP"),
    dependency(service("api"), ref("Deployment", "mysql"), "SQL"),
]


async def test_dependencies_answer_impact_path_and_relations(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        upserted = await stub.UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN)
        )
        assert upserted.upserted_count == 2

        found = await stub.GetResource(topology_pb2.GetResourceRequest(ref=service("api")))
        assert found.resource.origin == topology_pb2.RESOURCE_ORIGIN_DECLARED
        assert found.resource.HasField("created_at")

        impact = await stub.GetImpact(topology_pb2.GetImpactRequest(ref=ref("Deployment", "mysql")))
        assert impact.root.name == "mysql"
        assert impact.summary == "Deployment mysql down -> Service api -> Service frontend"
        assert [(i.resource.name, names(i.path), i.distance) for i in impact.impacted] == [
            ("api", ["mysql", "api"], 1),
            ("frontend", ["mysql", "api", "frontend"], 2),
        ]
        only = await stub.GetImpact(
            topology_pb2.GetImpactRequest(ref=ref("Deployment", "mysql"), kinds=["Pod"])
        )
        assert list(only.impacted) == []

        request = topology_pb2.FindPathRequest(to=service("frontend"))
        getattr(request, "from").CopyFrom(ref("Deployment", "mysql"))
        path = await stub.FindPath(request)
        assert path.found
        assert [(getattr(e, "from").name, e.to.name, e.type) for e in path.edges] == [
            ("api", "mysql", topology_pb2.EDGE_TYPE_DEPENDENCY),
            ("frontend", "api", topology_pb2.EDGE_TYPE_DEPENDENCY),
        ]
        request.max_depth = 1
        assert not (await stub.FindPath(request)).found

        relations = await stub.RelateResources(
            topology_pb2.RelateResourcesRequest(
                pairs=[
                    topology_pb2.ResourcePair(a=service("frontend"), b=ref("Deployment", "mysql")),
                    topology_pb2.ResourcePair(a=service("api"), b=service("api")),
                    topology_pb2.ResourcePair(a=service("api"), b=service("nowhere")),
                ],
                max_distance=1,
            )
        )
        assert [(r.index, r.kind, r.distance) for r in relations.relations] == [
            # Linked, two edges away: farther than max_distance.
            (0, R.Value("RELATION_KIND_UNRELATED"), 2),
            (1, R.Value("RELATION_KIND_SAME_RESOURCE"), 0),
            (2, R.Value("RELATION_KIND_UNKNOWN"), 0),
        ]
        default = await stub.RelateResources(
            topology_pb2.RelateResourcesRequest(
                pairs=[
                    topology_pb2.ResourcePair(a=service("frontend"), b=ref("Deployment", "mysql"))
                ]
            )
        )
        assert (default.relations[0].kind, default.relations[0].distance) == (
            R.Value("RELATION_KIND_DEPENDENCY"),
            2,
        )


async def test_dependencies_survive_a_restart(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN))
        # Upserting again only updates the description.
        again = [dependency(service("frontend"), service("api"), "gRPC")]
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=again))

    async with topology_server(database_url) as (app, stub):
        assert len(app.graph.resources) == 3 and app.graph.edge_count() == 2
        impact = await stub.GetImpact(topology_pb2.GetImpactRequest(ref=ref("Deployment", "mysql")))
        assert impact.summary == "Deployment mysql down -> Service api -> Service frontend"
        neighbours = await stub.ListNeighbors(topology_pb2.ListNeighborsRequest(ref=service("api")))
        assert sorted(n.resource.ref.name for n in neighbours.neighbors) == ["frontend", "mysql"]
    stored = app.store.snapshot()
    assert {d.description for d in stored.dependencies} == {"gRPC", "SQL"}


async def test_deleted_dependencies_stay_deleted_after_a_restart(database_url: str) -> None:
    async with topology_server(database_url) as (_app, stub):
        await stub.UpsertDependencies(topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN))
        request = topology_pb2.DeleteDependencyRequest(to=service("api"))
        getattr(request, "from").CopyFrom(service("frontend"))
        await stub.DeleteDependency(request)

    async with topology_server(database_url) as (app, stub):
        listed = await stub.ListResources(topology_pb2.ListResourcesRequest())
        assert sorted(names(listed.resources)) == ["api", "mysql"]
        assert app.graph.edge_count() == 1
    stored = app.store.snapshot()
    assert sorted(r.ref.name for r in stored.resources) == ["api", "mysql"]
    assert stored.head == 7


async def test_dependencies_file_is_loaded_at_start(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "deps.yaml"
    path.write_text(
        "dependencies:\n"
        "  - from: {kind: Service, namespace: shop, name: frontend}\n"
        "    to: {kind: Service, namespace: shop, name: api}\n"
        "    description: HTTP\n"
    )
    async with topology_server(database_url, dependencies_file=str(path)) as (_app, stub):
        impact = await stub.GetImpact(topology_pb2.GetImpactRequest(ref=service("api")))
        assert impact.summary == "Service api down -> Service frontend"
    # Loading the same file again on restart adds nothing.
    async with topology_server(database_url, dependencies_file=str(path)) as (app, _stub):
        assert app.notifier.head == 3  # two resources and one edge, logged once


async def test_malformed_dependencies_file_stops_the_start(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "deps.yaml"
    path.write_text("dependencies:\n  - from: {kind: Service, name: a}\n    to: {kind: Service}\n")
    with pytest.raises(DependenciesFileError, match=r"dependencies\[0\]\.to\.name"):
        async with running(
            TopologyApp, "topology", database_url=database_url, dependencies_file=str(path)
        ):
            pass


async def test_owner_chain_neighbours_and_listing_over_a_cluster_graph(database_url: str) -> None:
    async with topology_server(database_url) as (app, stub):
        # Kubernetes sync is not here yet: load its kind of graph directly.
        cluster, _keys = build_cluster()
        for resource in cluster.resources.values():
            app.graph.upsert_resource(resource)
        for key in list(cluster.resources):
            for source, target, edge_type in cluster.edges_of(key):
                app.graph.add_edge(source, target, edge_type)

        chain = await stub.GetOwnerChain(
            topology_pb2.GetOwnerChainRequest(ref=kref("Pod", "web-2"))
        )
        assert names(chain.chain) == ["web-2", "web-abc", "web"]
        assert [r.ref.kind for r in chain.chain] == ["Pod", "ReplicaSet", "Deployment"]

        around = await stub.ListNeighbors(
            topology_pb2.ListNeighborsRequest(
                ref=kref("Node", "worker-2", ""),
                direction=topology_pb2.DIRECTION_OUTGOING,
                edge_types=[topology_pb2.EDGE_TYPE_NODE],
                depth=3,
            )
        )
        assert [(n.resource.ref.name, n.distance, n.edge.to.name) for n in around.neighbors] == [
            ("web-1", 1, "web-1"),
            ("web-2", 1, "web-2"),
        ]

        pods = await stub.ListResources(topology_pb2.ListResourcesRequest(kind="Pod", page_size=2))
        assert names(pods.resources) == ["batch-1", "cache-0"] and pods.next_page_token
        rest = await stub.ListResources(
            topology_pb2.ListResourcesRequest(
                kind="Pod", page_size=2, page_token=pods.next_page_token
            )
        )
        assert names(rest.resources) == ["mysql-0", "web-1"]
        last = await stub.ListResources(
            topology_pb2.ListResourcesRequest(
                kind="Pod", page_size=2, page_token=rest.next_page_token
            )
        )
        assert names(last.resources) == ["web-2"] and not last.next_page_token

        web = await stub.ListResources(
            topology_pb2.ListResourcesRequest(label_selector="app=web,app!=db", namespace="shop")
        )
        assert sorted(f"{r.ref.kind}/{r.ref.name}" for r in web.resources) == [
            "ConfigMap/web-config",
            "Deployment/web",
            "Pod/web-1",
            "Pod/web-2",
            "ReplicaSet/web-abc",
            "Service/web",
        ]
        unlabelled = await stub.ListResources(
            topology_pb2.ListResourcesRequest(label_selector="!app", cluster="prod")
        )
        assert names(unlabelled.resources) == ["api", "frontend"]
        assert not (
            await stub.ListResources(topology_pb2.ListResourcesRequest(cluster="dev"))
        ).resources


async def test_client_relate_batches_pairs_and_keeps_indexes(database_url: str) -> None:
    async with running(TopologyApp, "topology", database_url=database_url) as (_app, address):
        channel = open_channel(address, traced=False)
        try:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            await stub.UpsertDependencies(
                topology_pb2.UpsertDependenciesRequest(dependencies=CHAIN)
            )
            pairs: list[tuple[event_pb2.ResourceRef, event_pb2.ResourceRef]] = [
                (service("frontend"), service("api"))
            ] * MAX_PAIRS
            pairs.append((service("api"), service("unknown")))
            relations = await client.relate(channel, pairs, max_distance=2)
        finally:
            await channel.close()
        assert len(relations) == MAX_PAIRS + 1
        assert [r.index for r in relations] == list(range(MAX_PAIRS + 1))
        assert relations[0].kind == R.Value("RELATION_KIND_DEPENDENCY")
        assert relations[-1].kind == R.Value("RELATION_KIND_UNKNOWN")
