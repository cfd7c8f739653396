"""GetStats' figures as OpenTelemetry metrics.

Counters advance when a batch (or an edit) is committed, so a metrics
backend and GetStats never disagree about what is durable; the analyse
latency is a histogram of every event; active groups and noise reduction are
read from the committed tables when the exporter asks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from corrmesh.correlation.queries import GroupQueries, noise_reduction

METER_NAME = "corrmesh.correlation"


class CorrelationMetrics:
    """The instruments, and what was last reported of the engine's counters."""

    def __init__(self, queries: GroupQueries, meter: Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self._queries = queries
        self.events = meter.create_counter(
            "corrmesh_correlation_events_total",
            unit="{event}",
            description="Events analysed (late and duplicate ones included).",
        )
        self.groups = meter.create_counter(
            "corrmesh_correlation_groups_created_total",
            unit="{group}",
            description="Groups created.",
        )
        self.matches = meter.create_counter(
            "corrmesh_correlation_matches_total",
            unit="{edge}",
            description="Correlation edges made, by strategy.",
        )
        self.latency = meter.create_histogram(
            "corrmesh_correlation_analyze_duration_seconds",
            unit="s",
            description="Time to analyse one event (candidates, strategies, placement).",
        )
        meter.create_observable_gauge(
            "corrmesh_correlation_active_groups",
            callbacks=[self._active_groups],
            unit="{group}",
            description="Committed groups in status ACTIVE.",
        )
        meter.create_observable_gauge(
            "corrmesh_correlation_noise_reduction_ratio",
            callbacks=[self._noise_reduction],
            unit="1",
            description="1 - (groups + lone events) / events, as GetStats reports it.",
        )
        self._events_in = 0
        self._groups_created = 0
        self._matches: Counter[str] = Counter()

    def committed(self, events_in: int, groups_created: int, matches: Counter[str]) -> None:
        """Adds what the engine counted since the last commit."""
        if events_in > self._events_in:
            self.events.add(events_in - self._events_in)
        if groups_created > self._groups_created:
            self.groups.add(groups_created - self._groups_created)
        self._events_in, self._groups_created = events_in, groups_created
        for strategy, count in matches.items():
            grown = count - self._matches[strategy]
            if grown > 0:
                self.matches.add(grown, {"strategy": strategy})
        self._matches = Counter(matches)

    def _active_groups(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._queries.counters().active_groups)

    def _noise_reduction(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(noise_reduction(self._queries.counters()))
