"""Helpers for Spanner tests: a client of a running Spanner, resources, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corrmesh.cli.mesh import free_port
from corrmesh.spanner.server import SpannerApp
from corrmesh.v1 import spanner_pb2 as pb
from corrmesh.v1 import spanner_pb2_grpc
from tests.support.inprocess import running

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub
    from tests.support.dicom_peers import Peers


@asynccontextmanager
async def spanner_app(database_url: str, **settings: Any) -> AsyncIterator[tuple[Stub, SpannerApp]]:
    """A Spanner server running in this loop, a client of it, and the app itself.

    ``settings`` are Settings overrides. Unless one is given, ``ingest_address``
    is a closed local port: a test's source events never reach an Ingest that
    happens to run on this machine's default port."""
    settings.setdefault("ingest_address", f"127.0.0.1:{free_port()}")
    async with (
        running(SpannerApp, "spanner", database_url=database_url, **settings) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        assert isinstance(app, SpannerApp)
        yield spanner_pb2_grpc.SpannerServiceStub(channel), app


@asynccontextmanager
async def spanner_client(database_url: str) -> AsyncIterator[Stub]:
    """A SpannerService client of a Spanner server running in this loop."""
    async with spanner_app(database_url) as (stub, _app):
        yield stub


async def fails(call: Awaitable[object], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Awaits ``call``, which must fail with ``code``; returns the error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def resource_info(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(resource_type, resource_name) of the ResourceInfo a NOT_FOUND carries."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            return info.resource_type, info.resource_name
    raise AssertionError("no ResourceInfo")


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    """An update_mask naming ``paths``."""
    return field_mask_pb2.FieldMask(paths=list(paths))


async def create_config(stub: Stub, name: str = "Production", **fields: object) -> pb.SpannerConfig:
    """Creates a config named ``name``; unset fields take the create defaults."""
    response = await stub.CreateSpannerConfig(
        pb.CreateSpannerConfigRequest(config=pb.SpannerConfig(name=name, **fields))  # type: ignore[arg-type]
    )
    return response.config


async def create_node(stub: Stub, name: str = "Orthanc", **fields: object) -> pb.DicomNode:
    """Creates a valid DIMSE node; ``fields`` override or add DicomNode fields."""
    node = pb.DicomNode(name=name, ae_title="ORTHANC", host="127.0.0.1", port=4242)
    node.MergeFrom(pb.DicomNode(**fields))  # type: ignore[arg-type]
    return (await stub.CreateDicomNode(pb.CreateDicomNodeRequest(node=node))).node


PEER_KEYS = ("a", "b", "c")


async def span_peers(
    stub: Stub,
    peers: Peers,
    name: str = "Peers",
    *,
    order: tuple[str, ...] = PEER_KEYS,
    dicomweb: tuple[str, ...] = (),
    **config: object,
) -> tuple[str, dict[str, str]]:
    """A configuration over the real peers ("a", "b", "c" = Orthanc A, B, dcmqrscp);
    ``order`` gives their priority (first preferred), ``dicomweb`` which ones are
    asked over QIDO-RS. Returns (config_id, peer key -> node_id)."""
    fields: dict[str, object] = {"enabled": True, "supports_dimse_scp": True, "supports_qido": True}
    fields.update(config)
    created = await create_config(stub, name, **fields)
    by_key = {"a": peers.orthanc_a, "b": peers.orthanc_b, "c": peers.dcmqrscp}
    nodes: dict[str, str] = {}
    for priority, key in enumerate(order):
        peer = by_key[key]
        node = await create_node(
            stub, f"{name}-{peer.name}", ae_title=peer.ae_title, port=peer.port,
            dicomweb_base_url=peer.dicomweb_url, enabled=True,
        )  # fmt: skip
        protocol = pb.SOURCE_PROTOCOL_DICOMWEB if key in dicomweb else pb.SOURCE_PROTOCOL_DIMSE
        await stub.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(
                    config_id=created.config_id, node_id=node.node_id, priority=priority,
                    protocol=protocol, enabled=True,
                )
            )
        )  # fmt: skip
        nodes[key] = node.node_id
    return created.config_id, nodes


def identifier(**keys: str | list[str]) -> pb.DicomDataset:
    """A DicomDataset of keywords and values ("" asks for the attribute back)."""
    out = pb.DicomDataset()
    for keyword, value in keys.items():
        values = value if isinstance(value, list) else ([value] if value else [])
        out.attributes.append(pb.DicomAttribute(keyword=keyword, values=values))
    return out


async def run_query(
    stub: Stub, config_id: str, level: int, keys: pb.DicomDataset, **fields: object
) -> tuple[list[pb.QueryMatch], list[pb.SourceStatus], pb.QuerySummary]:
    """Runs Query to the end: (matches, streamed statuses, summary)."""
    matches, statuses, summary = [], [], pb.QuerySummary()
    request = pb.QueryRequest(config_id=config_id, level=level, identifier=keys, **fields)  # type: ignore[arg-type]
    async for response in stub.Query(request):
        kind = response.WhichOneof("item")
        if kind == "match":
            matches.append(response.match)
        elif kind == "source_status":
            statuses.append(response.source_status)
        else:
            summary = response.summary
    return matches, statuses, summary


def values_of(match: pb.QueryMatch, keyword: str) -> list[str]:
    """The values of ``keyword`` in a match (empty when absent)."""
    for attribute in match.dataset.attributes:
        if attribute.keyword == keyword:
            return list(attribute.values)
    return []


def spanner_with_listeners(
    database_url: str, dimse_port: int, web_port: int, **settings: Any
) -> AbstractAsyncContextManager[tuple[Stub, SpannerApp]]:
    """A Spanner whose listeners use the given ports (started by the test);
    ``settings`` are further Settings overrides (ingest_address, ...)."""
    return spanner_app(
        database_url, spanner_dicom_port=dimse_port, spanner_dicomweb_port=web_port, **settings
    )
