"""What the Spanner process sets up before it serves: the frozen startup heap and
pynetdicom's logging turned off."""

from __future__ import annotations

import gc

import pytest
from pynetdicom import _config

from corrmesh.runtime.settings import Settings
from corrmesh.spanner import dimse, server


def test_main_freezes_the_startup_heap_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def serve(app_factory: type[server.SpannerApp], settings: Settings) -> None:
        seen["app"], seen["frozen"] = app_factory, gc.get_freeze_count()

    monkeypatch.setattr(server, "run", serve)
    try:
        server.main([])
    finally:
        gc.unfreeze()  # the test process keeps collecting as before
    assert seen["app"] is server.SpannerApp
    # The imports alone (pydicom, pynetdicom, gRPC, SQLAlchemy) are far more than this.
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 50_000


def test_frozen_objects_are_left_out_of_full_collections() -> None:
    made_before: list[int] = []
    try:
        frozen = server.freeze_startup_heap()
        made_after: list[int] = []
        # Frozen objects can still die by reference count (other threads' leftovers),
        # so the count may only shrink after the freeze, never grow.
        assert 0 < gc.get_freeze_count() <= frozen
        # A full collection now walks only what was made after the freeze.
        tracked = gc.get_objects()
        assert len(tracked) < frozen
        assert not any(obj is made_before for obj in tracked)
        assert any(obj is made_after for obj in tracked)
    finally:
        gc.unfreeze()


def test_pynetdicom_formats_no_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOG_HANDLER_LEVEL", "LOG_REQUEST_IDENTIFIERS", "LOG_RESPONSE_IDENTIFIERS"):
        monkeypatch.setattr(_config, name, getattr(_config, name))  # restored afterwards
    dimse.quiet_pynetdicom()
    assert _config.LOG_HANDLER_LEVEL == "none"
    assert not _config.LOG_REQUEST_IDENTIFIERS and not _config.LOG_RESPONSE_IDENTIFIERS
