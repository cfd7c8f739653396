"""Cluster settings, discovery of served versions, and Event mapping edge cases."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from corrmesh.topology.kube.client import ClusterClient
from corrmesh.topology.kube.cluster import ClusterConfig, ClusterConfigError, parse_clusters
from corrmesh.topology.kube.discovery import discover
from corrmesh.topology.kube.events import to_event
from corrmesh.topology.server import main
from tests.support.topology_kube import write_kubeconfig
from tests.support.topology_kube_server import LoopbackApiServer, load_recorded


def test_clusters_setting_is_parsed() -> None:
    assert parse_clusters(" prod=/k/prod.yaml , eu=/k/eu.yaml#admin@eu,local=in-cluster") == [
        ClusterConfig("prod", "/k/prod.yaml"),
        ClusterConfig("eu", "/k/eu.yaml", "admin@eu"),
        ClusterConfig("local"),
    ]
    assert parse_clusters("") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prod", "kube_clusters[0]: expected name=kubeconfig"),
        ("prod=/a,prod=/b", "kube_clusters[1]: cluster 'prod' named twice"),
        ("bad name=/a", "kube_clusters[0]: 'bad name' is not a valid name"),
        ("ok=/a,=/b", "kube_clusters[1]: '' is not a valid name"),
    ],
)
def test_a_malformed_clusters_setting_names_the_entry(text: str, message: str) -> None:
    with pytest.raises(ClusterConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_clusters(text)


def test_the_server_refuses_to_start_on_a_malformed_setting() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--kube-clusters", "prod=/a,prod=/b", "--port", "0"])
    assert "corrmesh topology: kube_clusters[1]: cluster 'prod' named twice" in str(raised.value)


def _served(discovery: dict[str, Any], tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    server = LoopbackApiServer(discovery, {})
    server.start()
    try:
        client = ClusterClient.from_kubeconfig(
            str(write_kubeconfig(tmp_path / "kubeconfig", server.url, "t"))
        )
        found = discover(client)
        client.close()
    finally:
        server.stop()
    return {k: s.api_version for k, s in found.served.items()}, found.skipped


def test_discovery_takes_the_versions_a_1_20_server_serves(tmp_path: Path) -> None:
    served, skipped = _served(load_recorded()["discovery"], tmp_path)
    assert served["CronJob"] == "batch/v1beta1"
    assert served["EndpointSlice"] == "discovery.k8s.io/v1beta1"
    assert served["Deployment"] == "apps/v1" and served["Secret"] == "v1"
    assert skipped == {"Endpoints": "replaced by EndpointSlice"}


def test_without_endpoint_slices_core_endpoints_are_synced(tmp_path: Path) -> None:
    discovery = copy.deepcopy(load_recorded()["discovery"])
    discovery["/apis"]["groups"] = [
        g for g in discovery["/apis"]["groups"] if g["name"] != "discovery.k8s.io"
    ]
    served, skipped = _served(discovery, tmp_path)
    assert served["Endpoints"] == "v1"
    assert skipped["EndpointSlice"].startswith("not served")


def test_events_without_an_involved_object_or_time_are_not_published() -> None:
    (event,) = load_recorded()["collections"]["/api/v1/events"]
    no_object = copy.deepcopy(event)
    no_object["involvedObject"] = {}
    assert to_event("prod", no_object) is None
    no_time = copy.deepcopy(event)
    for field in ("firstTimestamp", "lastTimestamp", "eventTime"):
        no_time[field] = None
    no_time["metadata"].pop("creationTimestamp")
    assert to_event("prod", no_time) is None
    series = copy.deepcopy(event)
    observed = "2026-11-01T12:09:00.000000Z"
    series.update(count=None, series={"count": 7, "lastObservedTime": observed})
    mapped = to_event("prod", series)
    assert mapped is not None and mapped.kubernetes.count == 7
    assert mapped.occurred_at.ToJsonString() == "2026-11-01T12:09:00Z"
