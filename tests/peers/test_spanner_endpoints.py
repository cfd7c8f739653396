"""The spanner as a PACS: its DIMSE SCP driven by dcmtk's findscu/movescu, its
QIDO-RS endpoint, Retrieve in every mode, and listener control."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from corrmesh.cli.mesh import free_port
from corrmesh.v1 import spanner_pb2 as pb
from tests.support.dicom_data import G1_SERIES, G1_STUDY, union
from tests.support.spanner import create_node, span_peers, spanner_with_listeners

if TYPE_CHECKING:
    from corrmesh.spanner.server import SpannerApp
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub
    from tests.support.dicom_peers import Peers


@pytest.fixture
async def listening(tmp_path: Path, peers: Peers) -> AsyncIterator[tuple[Stub, SpannerApp, str]]:
    """A Spanner over the three peers with both listeners running; the sink is a node."""
    async with spanner_with_listeners(
        f"sqlite:///{tmp_path / 's.db'}", peers.spanner_port, free_port()
    ) as (stub, app):
        config_id, _ = await span_peers(stub, peers)
        await create_node(stub, "sink", ae_title=peers.sink.ae_title, port=peers.sink.port,
                          enabled=True)  # fmt: skip
        started = await stub.StartListeners(pb.StartListenersRequest())
        assert {x.state for x in started.listeners} == {pb.LISTENER_STATE_RUNNING}
        peers.sink.clear()
        yield stub, app, config_id


def dcmtk(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, timeout=60, check=False)


async def test_findscu_against_the_spanning_scp_sees_the_union(
    listening: tuple[Stub, SpannerApp, str], peers: Peers, tmp_path: Path
) -> None:
    _, _, _ = listening
    echo = await asyncio.to_thread(
        dcmtk, "echoscu", "-aec", "CORRMESH", "127.0.0.1", str(peers.spanner_port)
    )
    assert echo.returncode == 0, echo.stderr
    out = tmp_path / "find"
    out.mkdir()
    done = await asyncio.to_thread(
        dcmtk, "findscu", "-S", "-aec", "CORRMESH", "-k", "QueryRetrieveLevel=STUDY",
        "-k", "StudyInstanceUID", "-k", "PatientName", "-X", "-od", str(out),
        "127.0.0.1", str(peers.spanner_port),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from pydicom import dcmread

    found = {str(dcmread(p).StudyInstanceUID) for p in out.iterdir()}
    everything = [d for items in peers.loaded.values() for d in items]
    assert found == union(everything, "STUDY")


async def test_movescu_through_the_spanner_lands_the_instances(
    listening: tuple[Stub, SpannerApp, str], peers: Peers
) -> None:
    done = await asyncio.to_thread(
        dcmtk, "movescu", "-S", "-aec", "CORRMESH", "-aem", "STORESCP",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={G1_STUDY}",
        "127.0.0.1", str(peers.spanner_port),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    everything = [d for items in peers.loaded.values() for d in items]
    assert peers.sink.received() == union(everything, "IMAGE", StudyInstanceUID=G1_STUDY)

    unknown = await asyncio.to_thread(
        dcmtk, "movescu", "-S", "-aec", "CORRMESH", "-aem", "NOWHERE",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={G1_STUDY}",
        "127.0.0.1", str(peers.spanner_port),
    )  # fmt: skip
    assert b"a801" in unknown.stderr.lower() or b"unknown" in unknown.stderr.lower()


@pytest.mark.parametrize(
    "strategy",
    [pb.RETRIEVE_STRATEGY_DIRECT, pb.RETRIEVE_STRATEGY_PROXY, pb.RETRIEVE_STRATEGY_HYBRID],
)
async def test_retrieve_in_each_mode_lands_the_right_instances(
    listening: tuple[Stub, SpannerApp, str], peers: Peers, strategy: int
) -> None:
    stub, _, config_id = listening
    responses = [
        r async for r in stub.Retrieve(pb.RetrieveRequest(
            config_id=config_id, level=pb.QUERY_LEVEL_STUDY, study_instance_uid=G1_STUDY,
            destination_ae_title="STORESCP", method=pb.RETRIEVE_METHOD_C_MOVE,
            strategy=strategy,  # type: ignore[arg-type]
        ))
    ]  # fmt: skip
    result = responses[-1].result
    everything = [d for items in peers.loaded.values() for d in items]
    expected = union(everything, "IMAGE", StudyInstanceUID=G1_STUDY)
    assert (result.dimse_status, result.completed, result.failed) == (0, len(expected), 0)
    assert peers.sink.received() == expected
    directives = [r.directive for r in responses if r.HasField("directive")]
    if strategy == pb.RETRIEVE_STRATEGY_PROXY:
        assert not directives
    else:
        listed = {u for d in directives for u in d.sop_instance_uids}
        assert listed == expected


async def test_retrieve_to_an_unknown_destination_is_a801(
    listening: tuple[Stub, SpannerApp, str],
) -> None:
    stub, _, config_id = listening
    responses = [
        r async for r in stub.Retrieve(pb.RetrieveRequest(
            config_id=config_id, level=pb.QUERY_LEVEL_SERIES, study_instance_uid=G1_STUDY,
            series_instance_uid=G1_SERIES[0], destination_ae_title="NOWHERE",
        ))
    ]  # fmt: skip
    assert responses[-1].result.dimse_status == 0xA801
    assert responses[-1].result.outcome == pb.OPERATION_OUTCOME_FAILED


async def test_qido_through_the_spanner_equals_the_qido_union(
    listening: tuple[Stub, SpannerApp, str], peers: Peers
) -> None:
    _, app, _ = listening
    base = f"http://127.0.0.1:{app.listeners.web_port}"
    async with httpx.AsyncClient(base_url=base) as client:
        spanned = await client.get("/studies", params={"includefield": "StudyDescription"})
        assert spanned.status_code == 200
        assert spanned.headers["content-type"].startswith("application/dicom+json")
        direct: set[str] = set()
        for peer in (peers.orthanc_a, peers.orthanc_b):
            answer = await client.get(peer.dicomweb_url + "/studies")
            direct |= {s["0020000D"]["Value"][0] for s in answer.json()}
        body = spanned.json()
        ours = {s["0020000D"]["Value"][0] for s in body}
        assert direct <= ours
        assert ours == union([d for i in peers.loaded.values() for d in i], "STUDY")
        g1 = next(s for s in body if s["0020000D"]["Value"][0] == G1_STUDY)
        assert g1["00100010"]["vr"] == "PN"
        assert g1["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jürgen"
        assert "Warning" not in spanned.headers

        cut = await client.get("/studies", params={"limit": "2", "offset": "1"})
        assert len(cut.json()) == 2 and cut.headers["Warning"].startswith("299")
        series = await client.get(f"/studies/{G1_STUDY}/series")
        assert {s["0020000E"]["Value"][0] for s in series.json()} == set(G1_SERIES)


async def test_listeners_stop_start_and_restart(
    listening: tuple[Stub, SpannerApp, str], peers: Peers
) -> None:
    stub, _, _ = listening
    stopped = await stub.StopListeners(pb.StopListenersRequest(listener_ids=["dimse-scp"]))
    assert stopped.listeners[0].state == pb.LISTENER_STATE_STOPPED
    echo = await asyncio.to_thread(
        dcmtk, "echoscu", "-aec", "CORRMESH", "127.0.0.1", str(peers.spanner_port)
    )
    assert echo.returncode != 0
    restarted = await stub.RestartListener(pb.RestartListenerRequest(listener_id="dimse-scp"))
    assert restarted.listener.state == pb.LISTENER_STATE_RUNNING
    assert restarted.listener.HasField("started_at")
    echo = await asyncio.to_thread(
        dcmtk, "echoscu", "-aec", "CORRMESH", "127.0.0.1", str(peers.spanner_port)
    )
    assert echo.returncode == 0
    status = await stub.GetServiceStatus(pb.GetServiceStatusRequest())
    assert {x.state for x in status.listeners} == {pb.LISTENER_STATE_RUNNING}
