"""Several clusters, and clusters that forbid, fail or fall silent: each gets a
clear state on its ``Cluster`` resource while the rest of the graph serves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from corrmesh.cli.mesh import free_port
from corrmesh.topology.kube import registry
from corrmesh.topology.kube.reflector import WatchOptions
from corrmesh.v1 import topology_pb2
from tests.support.topology import kube_ref as ref
from tests.support.topology import (
    kube_topology_of,
    topology_server,
    wait_for,
    wait_until_kinds_settle,
)
from tests.support.topology_kube_server import (
    LoopbackApiServer,
    kube_clusters_setting,
    load_recorded,
    loopback_apiserver,
    quick_watches,  # noqa: F401 (a fixture)
    with_new_uids,
)

T = topology_pb2
PODS = "/api/v1/pods"


pytestmark = pytest.mark.usefixtures("quick_watches")


@pytest.fixture
def loopback() -> Iterator[LoopbackApiServer]:
    with loopback_apiserver() as server:
        yield server


async def test_a_forbidden_kind_degrades_only_that_kind(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    loopback.forbidden.add("/api/v1/secrets")
    async with kube_topology_of(database_url, tmp_path, {"prod": loopback.url}, {"degraded"}) as (
        app,
        stub,
    ):
        cluster = await stub.GetResource(T.GetResourceRequest(ref=ref("Cluster", "prod", "")))
        assert cluster.resource.attributes["state"] == "degraded"
        assert cluster.resource.attributes["kind.Secret"].startswith("forbidden: ")
        await wait_until_kinds_settle(stub, "prod", {"Secret"})
        assert app.graph.get(ref("Pod", "payment-5d9c7-0")) is not None
        owners = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "mysql-0")))
        assert owners.chain[-1].ref.kind == "StatefulSet"
        assert app.graph.get(ref("Secret", "db-credentials")) is None
        # Once the kind is allowed, the cluster recovers by itself.
        loopback.forbidden.clear()
        assert app.kube is not None
        await app.kube.wait_until({"synced"}, 10)
        assert app.graph.get(ref("Secret", "db-credentials")) is not None


async def test_an_unreachable_cluster_leaves_the_others_serving(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    servers = {"prod": loopback.url, "dead": dead}
    setting = kube_clusters_setting(tmp_path, servers)
    async with topology_server(database_url, kube_clusters=setting) as (app, stub):
        assert app.kube is not None

        async def settled() -> bool:
            status = app.kube.status if app.kube else {}
            return (
                status["prod"].overall() == "synced" and status["dead"].overall() == "unreachable"
            )

        await wait_for(settled, 20)
        cluster = await stub.GetResource(
            T.GetResourceRequest(ref=ref("Cluster", "dead", "", "dead"))
        )
        assert cluster.resource.attributes["state"] == "unreachable"
        assert "127.0.0.1" in cluster.resource.attributes["detail"]
        chain = await stub.GetOwnerChain(T.GetOwnerChainRequest(ref=ref("Pod", "web-5d9c7-0")))
        assert chain.chain[-1].ref.name == "web"


async def test_several_clusters_at_once(database_url: str, tmp_path: Path) -> None:
    recorded = load_recorded()["collections"]
    with (
        loopback_apiserver() as first,
        loopback_apiserver(with_new_uids(recorded, "eu")) as second,
    ):
        servers = {"us": first.url, "eu": second.url}
        async with kube_topology_of(database_url, tmp_path, servers) as (app, stub):
            for cluster in ("us", "eu"):
                chain = await stub.GetOwnerChain(
                    T.GetOwnerChainRequest(ref=ref("Pod", "order-5d9c7-1", cluster=cluster))
                )
                assert [r.ref.cluster for r in chain.chain] == [cluster] * 3
            impact = await stub.GetImpact(T.GetImpactRequest(ref=ref("Node", "worker-2", "", "eu")))
            assert {i.resource.cluster for i in impact.impacted} == {"eu"}
            second.remove(PODS, "shop", "order-5d9c7-1")

            async def gone_in_eu_only() -> bool:
                return (
                    app.graph.get(ref("Pod", "order-5d9c7-1", cluster="eu")) is None
                    and app.graph.get(ref("Pod", "order-5d9c7-1", cluster="us")) is not None
                )

            await wait_for(gone_in_eu_only)


async def test_a_silent_server_times_out_instead_of_hanging(
    database_url: str, tmp_path: Path, loopback: LoopbackApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        registry,
        "DEFAULT_OPTIONS",
        WatchOptions(request_timeout_seconds=0.2, backoff_initial_seconds=0.05),
    )
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        servers = {"prod": loopback.url, "silent": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        setting = kube_clusters_setting(tmp_path, servers)
        async with topology_server(database_url, kube_clusters=setting) as (app, _stub):
            assert app.kube is not None
            kube = app.kube

            async def settled() -> bool:
                status = kube.status
                return (
                    status["prod"].overall() == "synced"
                    and status["silent"].overall() == "unreachable"
                )

            await wait_for(settled, 20)
            assert "timed out" in kube.status["silent"].detail.lower()
