"""GetStats' figures as OpenTelemetry metrics, read with the SDK's in-memory reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from corrmesh.correlation.server import CorrelationApp
from corrmesh.v1 import correlation_pb2
from tests.support.correlation_events import event
from tests.support.correlation_mesh import mesh


class _MeteredCorrelation(CorrelationApp):
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])


def _points(name: str) -> dict[tuple[tuple[str, object], ...], object]:
    """Data points of one instrument: attributes -> value (sum, gauge) or count (histogram)."""
    found: dict[tuple[tuple[str, object], ...], object] = {}
    data = _MeteredCorrelation.reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    found[key] = getattr(point, "value", None) or getattr(point, "count", None)
    return found


async def test_metrics_match_get_stats(database_url: str, tmp_path: Path) -> None:
    before = _points("corrmesh_correlation_events_total").get((), 0)
    async with mesh(database_url, tmp_path, _MeteredCorrelation) as m:
        sequences = await m.publish(
            event(0, fingerprint="f"),
            event(1, fingerprint="f"),
            event(2, fingerprint="f"),
            event(3, fingerprint="g"),
        )
        await m.consumed(sequences[-1])
        stats = await m.correlation.GetStats(correlation_pb2.GetStatsRequest())
        assert _points("corrmesh_correlation_events_total")[()] == before + stats.events_in  # type: ignore[operator]
        assert _points("corrmesh_correlation_matches_total")[(("strategy", "fingerprint"),)] >= 3  # type: ignore[operator]
        assert _points("corrmesh_correlation_analyze_duration_seconds")[()] >= 4  # type: ignore[operator]
        assert _points("corrmesh_correlation_active_groups")[()] == stats.active_groups == 1
        assert _points("corrmesh_correlation_noise_reduction_ratio")[()] == pytest.approx(
            stats.noise_reduction
        )
