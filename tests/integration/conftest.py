"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.support.spanner import spanner_client

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub


@pytest.fixture
async def spanner(database_url: str) -> AsyncIterator[SpannerServiceAsyncStub]:
    """A Spanner server on the test's database, and a stub for it."""
    async with spanner_client(database_url) as stub:
        yield stub
