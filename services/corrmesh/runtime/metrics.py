"""OpenTelemetry metrics for every server: one MeterProvider, exporters from ``OTEL_*``.

``OTEL_METRICS_EXPORTER`` chooses ``otlp`` (to ``OTEL_EXPORTER_OTLP_*``),
``console`` or ``none`` (the default, like traces); the export interval is
``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, the SDK's own variable).
Instrument names follow OpenTelemetry/Prometheus naming:
``corrmesh_<what>_<unit>``.
"""

from __future__ import annotations

import os

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

_provider: MeterProvider | None = None


def _exporters_from_env() -> list[MetricExporter]:
    chosen: list[MetricExporter] = []
    for name in os.environ.get("OTEL_METRICS_EXPORTER", "none").split(","):
        name = name.strip().lower()
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )

            chosen.append(OTLPMetricExporter())
        elif name == "console":
            chosen.append(ConsoleMetricExporter())
    return chosen


def configure_metrics(service: str, readers: list[MetricReader] | None = None) -> MeterProvider:
    """Installs the global meter provider for this process (once)."""
    global _provider
    if _provider is not None:
        return _provider
    name = os.environ.get("OTEL_SERVICE_NAME") or f"corrmesh-{service}"
    if readers is None:
        readers = [PeriodicExportingMetricReader(e) for e in _exporters_from_env()]
    provider = MeterProvider(
        resource=Resource.create({"service.name": name}), metric_readers=readers
    )
    metrics.set_meter_provider(provider)
    _provider = provider
    return provider


def shutdown_metrics() -> None:
    """Exports what is pending and stops the readers."""
    if _provider is not None:
        _provider.shutdown()
