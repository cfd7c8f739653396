"""The real-peer tier: two Orthancs with DICOMweb, dcmqrscp and storescp, started once
per session and loaded with overlapping data (tests/support/dicom_data.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.dicom_data import corpus
from tests.support.dicom_peers import Peers, load_dimse, load_orthanc, running_peers
from tests.support.spanner import spanner_client

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """The three PACS and the sink, loaded; ended after the session."""
    with running_peers(tmp_path_factory.mktemp("dicom-peers")) as started:
        data = corpus()
        load_orthanc(started.orthanc_a, data["a"])
        load_orthanc(started.orthanc_b, data["b"])
        load_dimse(started.dcmqrscp, data["c"])
        started.loaded = data
        yield started


@pytest.fixture
async def spanner(tmp_path: Path) -> AsyncIterator[SpannerServiceAsyncStub]:
    """A Spanner on embedded SQLite (the audit test also runs on PostgreSQL)."""
    async with spanner_client(f"sqlite:///{tmp_path / 'spanner.db'}") as stub:
        yield stub
