"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corrmesh.cli.mesh import Mesh
from tests.support.databases import database_url_for, postgres_schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on embedded SQLite and on the real PostgreSQL."""
    with database_url_for(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL, for behaviour only PostgreSQL has."""
    with postgres_schema_url() as url:
        yield url


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """All four services as separate processes on free ports, embedded SQLite."""
    with Mesh.on_free_ports(tmp_path_factory.mktemp("mesh")) as running_mesh:
        yield running_mesh
