"""The real kube-apiserver tier: each test gets its own etcd + kube-apiserver
(started in ~10 s from the cached build), so tests cannot disturb each other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.topology_apiserver import (
    ApiServer,
    ApiServerUnavailableError,
    binaries,
    start_apiserver,
)
from tests.support.topology_kube_server import quick_watches  # noqa: F401 (a fixture)


@pytest.fixture(scope="session")
def apiserver_binaries() -> Path:
    """The cached binaries, built on first use; under CI a failure fails."""
    try:
        return binaries()
    except ApiServerUnavailableError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"kube-apiserver unavailable: {exc}")
        pytest.skip(f"kube-apiserver unavailable: {exc}")


@pytest.fixture
def apiserver(apiserver_binaries: Path, tmp_path: Path) -> Iterator[ApiServer]:
    server = start_apiserver(tmp_path / "apiserver", apiserver_binaries)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _quick(request: pytest.FixtureRequest) -> None:
    """Every test here runs with quick watches."""
    request.getfixturevalue("quick_watches")
