"""Helpers for Spanner tests: a client of a running Spanner, resources, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corrmesh.spanner.server import SpannerApp
from corrmesh.v1 import spanner_pb2 as pb
from corrmesh.v1 import spanner_pb2_grpc
from tests.support.inprocess import running

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub


@asynccontextmanager
async def spanner_client(database_url: str) -> AsyncIterator[Stub]:
    """A SpannerService client of a Spanner server running in this loop."""
    async with (
        running(SpannerApp, "spanner", database_url=database_url) as (_app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield spanner_pb2_grpc.SpannerServiceStub(channel)


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
