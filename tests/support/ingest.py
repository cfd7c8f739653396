"""Helpers for Ingest tests: events, a running Ingest server, reading results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import status_pb2

from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.errors import field_violation_names
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.inprocess import running

if TYPE_CHECKING:
    from corrmesh.v1.ingest_pb2_grpc import IngestServiceAsyncStub

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_event(offset_seconds: float = 0.0, **fields: Any) -> event_pb2.Event:
    """A valid Kubernetes event; ``fields`` override or add Event fields."""
    event = event_pb2.Event(
        domain=event_pb2.DOMAIN_KUBERNETES,
        source="kubernetes/test",
        title="Back-off restarting failed container",
        severity=event_pb2.SEVERITY_WARNING,
        type="BackOff",
        resource=event_pb2.ResourceRef(
            cluster="prod-eu", kind="Pod", namespace="shop", name="checkout-1"
        ),
    )
    event.occurred_at.FromDatetime(BASE_TIME + timedelta(seconds=offset_seconds))
    for name, value in fields.items():
        if isinstance(value, event_pb2.ResourceRef):
            event.resource.CopyFrom(value)
        elif name == "attributes":
            event.attributes.update(value)
        else:
            setattr(event, name, value)
    return event


def status_fields(status: status_pb2.Status) -> list[str]:
    """Field names of the BadRequest details in a google.rpc.Status."""
    return field_violation_names(status)


@asynccontextmanager
async def ingest_server(
    database_url: str, app_type: type[IngestApp] = IngestApp
) -> AsyncIterator[tuple[IngestApp, IngestServiceAsyncStub]]:
    """A running Ingest server on ``database_url`` and a stub connected to it."""
    async with (
        running(app_type, "ingest", database_url=database_url) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        assert isinstance(app, IngestApp)
        yield app, ingest_pb2_grpc.IngestServiceStub(channel)


async def collect(
    call: Any,
    until: Callable[[list[ingest_pb2.SubscribeResponse]], bool],
    timeout: float = 10.0,
) -> list[ingest_pb2.SubscribeResponse]:
    """Reads Subscribe responses from ``call`` until ``until(responses)`` holds."""
    responses: list[ingest_pb2.SubscribeResponse] = []

    async def read() -> None:
        while not until(responses):
            response = await call.read()
            assert response is not grpc.aio.EOF, "the stream ended early"
            responses.append(response)

    await asyncio.wait_for(read(), timeout)
    return responses


def events_of(responses: list[ingest_pb2.SubscribeResponse]) -> list[event_pb2.Event]:
    return [event for response in responses for event in response.events]
