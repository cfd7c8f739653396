"""Clients in other languages, run as real processes against the mesh."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so these tests run under --strict-markers on their own.
    config.addinivalue_line("markers", "e2e: needs the running mesh (the `mesh` fixture)")
