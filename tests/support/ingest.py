"""Helpers for Ingest tests: events, a running Ingest server, reading results."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE

from corrmesh.ingest.server import IngestApp
from corrmesh.runtime.errors import field_violation_names
from corrmesh.runtime.settings import INGEST_DICOM_AE_TITLE
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.dicom_data import instance
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
        if isinstance(value, Message):  # resource, and the details (camera, dicom, ...)
            getattr(event, name).CopyFrom(value)
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


# -- edge listeners (DICOM C-STORE SCP, webhooks) ------------------------------

CALLING_AE = "MODALITY1"


def send_c_store(port: int, path: Path, syntaxes: Sequence[UID] = (ExplicitVRLittleEndian,)) -> int:
    """Sends the file at ``path`` to the SCP on ``port`` as it is (pynetdicom does
    not decode it) from ``CALLING_AE``, proposing ``syntaxes``; the C-STORE status."""
    ae = AE(CALLING_AE)
    for syntax in syntaxes:
        ae.add_requested_context(SecondaryCaptureImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=INGEST_DICOM_AE_TITLE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


@asynccontextmanager
async def edge_server(
    database_url: str, var_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[IngestApp, IngestServiceAsyncStub]]:
    """Ingest with its SCP and webhook listener on free ports, state under ``var_dir``."""
    settings: dict[str, Any] = {
        "ingest_dicom_port": 0,
        "ingest_webhook_port": 0,
        "var_dir": var_dir,
        "database_url": database_url,
    }
    settings.update(overrides)
    async with (
        running(IngestApp, "ingest", **settings) as (app, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        assert isinstance(app, IngestApp)
        yield app, ingest_pb2_grpc.IngestServiceStub(channel)


async def all_events(
    stub: IngestServiceAsyncStub, event_filter: ingest_pb2.EventFilter | None = None
) -> list[event_pb2.Event]:
    """Every event in the log matching ``event_filter``, in sequence order."""
    events: list[event_pb2.Event] = []
    token = ""
    while True:
        page = await stub.ListEvents(
            ingest_pb2.ListEventsRequest(filter=event_filter, page_size=1000, page_token=token)
        )
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events


@dataclass
class StoreRun:
    returncode: int
    output: str


async def storescu(
    port: int,
    files: Sequence[Path],
    calling: str = CALLING_AE,
    called: str = INGEST_DICOM_AE_TITLE,
    *extra: str,
) -> StoreRun:
    """dcmtk's storescu sending ``files`` in one association (TCP_NODELAY on)."""
    process = await asyncio.create_subprocess_exec(
        "storescu",
        "-aet",
        calling,
        "-aec",
        called,
        *extra,
        "127.0.0.1",
        str(port),
        *map(str, files),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    return StoreRun(process.returncode or 0, output.decode(errors="replace"))


def write_study(
    folder: Path, study: str, count: int, patient_id: str, patient_name: str, series: int = 1
) -> list[Path]:
    """``count`` generated instances of ``study`` spread over ``series`` series, as files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, count + 1):
        series_uid = f"{study}.{(number - 1) % series + 1}"
        ds = instance(
            study,
            series_uid,
            number,
            charset="ISO_IR 192",
            patient_name=patient_name,
            patient_id=patient_id,
        )
        path = folder / f"{study}-{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def bundled_files(*names: str) -> list[Path]:
    """Files pydicom ships (CT_small.dcm, MR_small.dcm, rtplan.dcm, ...)."""
    paths = []
    for name in names:
        found = get_testdata_file(name)
        assert found is not None, name
        paths.append(Path(found))
    return paths
