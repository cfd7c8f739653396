"""Spanner's process-level behaviour over gRPC, on SQLite and PostgreSQL:
service status, the empty query log, the RPCs still to come, health and
persistence across a restart."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from corrmesh.cli.mesh import free_port
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.runtime.server import Server
from corrmesh.runtime.settings import (
    SPANNER_DICOM_AE_TITLE,
    SPANNER_DICOM_PORT,
    SPANNER_DICOMWEB_PORT,
    load_settings,
)
from corrmesh.spanner.server import SpannerApp
from corrmesh.v1 import spanner_pb2 as pb
from corrmesh.v1 import spanner_pb2_grpc
from tests.support.inprocess import running


async def test_service_status_reports_stopped_listeners(database_url: str) -> None:
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = spanner_pb2_grpc.SpannerServiceStub(channel)
        status = await stub.GetServiceStatus(pb.GetServiceStatusRequest())
    assert list(status.sources) == []
    by_id = {listener.listener_id: listener for listener in status.listeners}
    assert set(by_id) == {"dimse-scp", "dicomweb"}
    dimse, web = by_id["dimse-scp"], by_id["dicomweb"]
    assert (dimse.kind, dimse.port, dimse.ae_title) == (
        pb.LISTENER_KIND_DIMSE,
        SPANNER_DICOM_PORT,
        SPANNER_DICOM_AE_TITLE,
    )
    assert (web.kind, web.port, web.ae_title) == (
        pb.LISTENER_KIND_DICOMWEB,
        SPANNER_DICOMWEB_PORT,
        "",
    )
    assert {dimse.state, web.state} == {pb.LISTENER_STATE_STOPPED}
    assert not dimse.HasField("started_at")


async def test_engine_rpcs_check_their_requests(database_url: str) -> None:
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = spanner_pb2_grpc.SpannerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            bad = pb.QueryRequest(information_model=9)  # type: ignore[arg-type]
            async for _ in stub.Query(bad):
                pytest.fail("Query yielded a response")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(bad_request_fields(caught.value)) == {"config_id", "level"}

        request = pb.QueryRequest(config_id="missing", level=pb.QUERY_LEVEL_STUDY)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Query(request):
                pytest.fail("Query yielded a response")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Retrieve(pb.RetrieveRequest(level=pb.QUERY_LEVEL_IMAGE)):
                pytest.fail("Retrieve yielded a response")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {"config_id", "study_instance_uid", "sop_instance_uids"} <= set(
            bad_request_fields(caught.value)
        )

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RestartListener(pb.RestartListenerRequest(listener_id="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        assert (await stub.GetServiceStatus(pb.GetServiceStatusRequest())).listeners


async def test_query_logs_list_reads_the_table(database_url: str) -> None:
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = spanner_pb2_grpc.SpannerServiceStub(channel)
        empty = await stub.ListQueryLogs(pb.ListQueryLogsRequest())
        assert list(empty.logs) == [] and empty.next_page_token == ""

        # The fan-out engine will write these entries; until then the test does.
        start = datetime(2026, 11, 1, tzinfo=UTC)
        assert isinstance(app, SpannerApp)
        for i in range(3):
            entry = pb.QueryLog(
                config_id="cfg-a" if i < 2 else "cfg-b",
                operation=pb.SPANNING_OPERATION_C_FIND,
                level=pb.QUERY_LEVEL_STUDY,
                query_keys={"StudyDate": "20261101"},
                sources=[pb.SourceStatus(node_id="n1", outcome=pb.SOURCE_OUTCOME_SUCCEEDED)],
                outcome=pb.OPERATION_OUTCOME_SUCCEEDED,
                elapsed=duration_pb2.Duration(seconds=2, nanos=500_000_000),
            )
            entry.started_at.FromDatetime(start + timedelta(minutes=i))
            await asyncio.to_thread(app.store.add_query_log, entry)

        first = await stub.ListQueryLogs(pb.ListQueryLogsRequest(config_id="cfg-a", page_size=1))
        assert len(first.logs) == 1 and first.next_page_token
        log = first.logs[0]
        assert log.started_at.ToDatetime(UTC) == start + timedelta(minutes=1)  # newest first
        assert log.operation == pb.SPANNING_OPERATION_C_FIND
        assert log.level == pb.QUERY_LEVEL_STUDY
        assert log.outcome == pb.OPERATION_OUTCOME_SUCCEEDED
        assert log.elapsed == duration_pb2.Duration(seconds=2, nanos=500_000_000)
        assert dict(log.query_keys) == {"StudyDate": "20261101"}
        assert list(log.sources) == [
            pb.SourceStatus(node_id="n1", outcome=pb.SOURCE_OUTCOME_SUCCEEDED)
        ]
        assert log.log_id and log.config_id == "cfg-a"

        second = await stub.ListQueryLogs(
            pb.ListQueryLogsRequest(
                config_id="cfg-a", page_size=1, page_token=first.next_page_token
            )
        )
        assert [entry.started_at.ToDatetime(UTC) for entry in second.logs] == [start]
        assert second.next_page_token == ""
        assert len((await stub.ListQueryLogs(pb.ListQueryLogsRequest())).logs) == 3

        # A token is bound to the filter it was issued for.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListQueryLogs(
                pb.ListQueryLogsRequest(config_id="cfg-b", page_token=first.next_page_token)
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["page_token"]


async def test_health_serving_when_store_answers(database_url: str) -> None:
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        assert isinstance(app, SpannerApp)
        assert await app.ready()
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="corrmesh.v1.SpannerService")
        # Health.Watch fails under the OpenTelemetry aio interceptor, so poll Check.
        deadline = asyncio.get_running_loop().time() + 10
        status = health_pb2.HealthCheckResponse.UNKNOWN
        while asyncio.get_running_loop().time() < deadline:
            status = (await health.Check(request)).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.SERVING

        # A store that cannot answer makes the service not ready.
        await asyncio.to_thread(app.store.close)
        assert not await app.ready()
        await asyncio.to_thread(app.store.open)


async def test_configuration_survives_a_restart(database_url: str) -> None:
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = spanner_pb2_grpc.SpannerServiceStub(channel)
        config = (
            await stub.CreateSpannerConfig(
                pb.CreateSpannerConfigRequest(
                    config=pb.SpannerConfig(
                        name="durable",
                        failure_strategy=pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD,
                        minimum_success_threshold=2,
                        query_timeout=duration_pb2.Duration(seconds=12, nanos=5),
                    )
                )
            )
        ).config
        node = (
            await stub.CreateDicomNode(
                pb.CreateDicomNodeRequest(
                    node=pb.DicomNode(
                        name="pacs", ae_title="PACS", host="10.0.0.1", port=104,
                        tls=pb.TlsSettings(enabled=True, ca_cert_path="/ca.pem"),
                    )
                )
            )
        ).node  # fmt: skip
        mapping = (
            await stub.AddSourceMapping(
                pb.AddSourceMappingRequest(
                    mapping=pb.SourceMapping(
                        config_id=config.config_id,
                        node_id=node.node_id,
                        priority=2,
                        timeout=duration_pb2.Duration(seconds=5),
                        protocol=pb.SOURCE_PROTOCOL_DICOMWEB,
                    )
                )
            )
        ).mapping

    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = spanner_pb2_grpc.SpannerServiceStub(channel)
        got_config = await stub.GetSpannerConfig(
            pb.GetSpannerConfigRequest(config_id=config.config_id)
        )
        assert got_config.config == config
        assert (await stub.GetDicomNode(pb.GetDicomNodeRequest(node_id=node.node_id))).node == node
        mappings = await stub.ListSourceMappings(
            pb.ListSourceMappingsRequest(config_id=config.config_id)
        )
        assert list(mappings.mappings) == [mapping]


def _echo(port: int, called: str) -> int:
    ae = AE(ae_title="ECHOER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


async def test_listeners_start_with_the_process_from_settings(database_url: str) -> None:
    dicom_port, web_port = free_port(), free_port()
    env = {
        "CORRMESH_SPANNER_DICOM_PORT": str(dicom_port),
        "CORRMESH_SPANNER_DICOMWEB_PORT": str(web_port),
        "CORRMESH_SPANNER_DICOM_AE_TITLE": "SPANX",
        "CORRMESH_SPANNER_START_LISTENERS": "true",
        "CORRMESH_SPANNER_DATABASE_URL": database_url,
    }
    settings = load_settings("spanner", [], env=env)
    defaults = load_settings("spanner", [], env={})
    assert (defaults.spanner_dicom_port, defaults.spanner_dicomweb_port) == (
        SPANNER_DICOM_PORT,
        SPANNER_DICOMWEB_PORT,
    )
    assert defaults.spanner_dicom_ae_title == SPANNER_DICOM_AE_TITLE
    assert not defaults.spanner_start_listeners
    flagged = load_settings("spanner", ["--spanner-start-listeners"], env={})
    assert flagged.spanner_start_listeners

    settings = dataclasses.replace(settings, host="127.0.0.1", port=0, grace_seconds=1.0)
    server = Server(SpannerApp(settings))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = spanner_pb2_grpc.SpannerServiceStub(channel)
            status = await stub.GetServiceStatus(pb.GetServiceStatusRequest())
        by_id = {listener.listener_id: listener for listener in status.listeners}
        assert {x.state for x in status.listeners} == {pb.LISTENER_STATE_RUNNING}
        assert (by_id["dimse-scp"].port, by_id["dimse-scp"].ae_title) == (dicom_port, "SPANX")
        assert by_id["dicomweb"].port == web_port
        assert await asyncio.to_thread(_echo, dicom_port, "SPANX") == 0x0000
        async with httpx.AsyncClient() as client:
            # No configuration serves QIDO-RS yet: the listener answers, unavailable.
            answer = await client.get(f"http://127.0.0.1:{web_port}/studies")
        assert answer.status_code == 503
    finally:
        await server.stop()
