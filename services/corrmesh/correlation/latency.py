"""A bounded sample of analyse latencies, for GetStats' percentiles."""

from __future__ import annotations

import random


class LatencyReservoir:
    """Uniform reservoir sample (algorithm R) of at most ``capacity`` durations.

    Memory stays fixed however many events pass; every observation so far has
    the same chance to be in the sample, so percentiles describe the whole run.
    """

    def __init__(self, capacity: int = 4096, seed: int | None = None) -> None:
        self.capacity = capacity
        self.count = 0
        self._samples: list[float] = []
        self._random = random.Random(seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        if len(self._samples) < self.capacity:
            self._samples.append(seconds)
            return
        slot = self._random.randrange(self.count)
        if slot < self.capacity:
            self._samples[slot] = seconds

    def percentile(self, fraction: float) -> float:
        """The ``fraction`` (0..1) quantile in seconds, nearest rank; 0 when empty."""
        return self.percentiles(fraction)[0]

    def percentiles(self, *fractions: float) -> list[float]:
        """Several quantiles from one sort of the sample."""
        if not self._samples:
            return [0.0 for _ in fractions]
        ordered = sorted(self._samples)
        last = len(ordered) - 1
        return [ordered[min(last, max(0, round(f * len(ordered)) - 1))] for f in fractions]
