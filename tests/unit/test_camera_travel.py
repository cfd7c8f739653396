"""Travel times between cameras, learnt from the steps of passes."""

from __future__ import annotations

import pytest

from corrmesh.correlation.camera_travel import (
    KNOWN_AFTER,
    MISSED_CAMERA,
    PLAUSIBLE,
    RECENT,
    TravelTimes,
)

SITE = "nvr-1\x1fperson"
WINDOW_US = 10_000_000
S = 1_000_000


def learnt(*walks: tuple[str, str, float], site: str = SITE) -> TravelTimes:
    """A model that has seen every walk (a, b, seconds) KNOWN_AFTER times, jittered."""
    travel = TravelTimes()
    for a, b, seconds in walks:
        for i in range(KNOWN_AFTER):
            jitter = (i % 3 - 1) * 0.2  # -0.2, 0, +0.2 s: the median is the walk
            travel.observe(site, a, b, round((seconds + jitter) * S))
    return travel


def plausibility(travel: TravelTimes, head: str, camera: str, seconds: float, seen=()) -> float:
    return travel.plausibility(SITE, head, camera, round(seconds * S), (head, *seen), WINDOW_US)


def test_an_unknown_pair_falls_back_to_the_window() -> None:
    travel = TravelTimes()
    assert plausibility(travel, "door", "hall", 0) == 1.0
    assert plausibility(travel, "door", "hall", 10) == pytest.approx(0.5)
    assert plausibility(travel, "door", "hall", 10.1) == 0.0
    assert travel.expected_us(SITE, "door", "hall") is None


def test_a_pair_is_known_after_enough_steps_and_either_way_round() -> None:
    travel = TravelTimes()
    for _ in range(KNOWN_AFTER - 1):
        travel.observe(SITE, "door", "hall", 4 * S)
    assert travel.expected_us(SITE, "door", "hall") is None
    travel.observe(SITE, "hall", "door", 4 * S)
    assert travel.expected_us(SITE, "door", "hall") == 4 * S
    assert travel.expected_us(SITE, "hall", "door") == 4 * S


def test_a_known_walk_decides_inside_and_beyond_the_window() -> None:
    travel = learnt(("door", "hall", 4.0), ("yard", "garden", 14.0))
    assert plausibility(travel, "door", "hall", 4.0) == pytest.approx(1.0)
    assert plausibility(travel, "hall", "door", 4.5) > 0.9
    # Inside the 10 s window, but far from the learnt walk: not a continuation.
    assert plausibility(travel, "door", "hall", 9.0) < PLAUSIBLE
    assert plausibility(travel, "door", "hall", 0.0) < PLAUSIBLE
    # A long walk, beyond the window, continues its pass.
    assert plausibility(travel, "yard", "garden", 14.5) > 0.9
    assert plausibility(travel, "yard", "garden", 5.0) < PLAUSIBLE


def test_sites_and_detection_classes_learn_apart() -> None:
    travel = learnt(("driveway", "garage", 1.0), site="nvr-1\x1fvehicle")
    assert travel.expected_us("nvr-1\x1fvehicle", "driveway", "garage") == 1 * S
    assert travel.expected_us(SITE, "driveway", "garage") is None
    assert travel.expected_us("nvr-2\x1fvehicle", "driveway", "garage") is None


def test_a_missed_camera_between_two_known_walks() -> None:
    travel = learnt(("door", "hall", 4.0), ("hall", "yard", 6.0))
    # door -> yard was never walked directly: through the hall it takes 10 s.
    assert plausibility(travel, "door", "yard", 10.0) == pytest.approx(MISSED_CAMERA)
    assert plausibility(travel, "door", "yard", 3.0) < PLAUSIBLE
    # Not when the pass has already shown on the hall camera.
    assert plausibility(travel, "door", "yard", 10.0, seen=("hall",)) == pytest.approx(0.5)


def test_the_newest_steps_win_when_the_layout_changes() -> None:
    travel = learnt(("door", "hall", 4.0))
    for _ in range(RECENT):
        travel.observe(SITE, "door", "hall", 8 * S)
    assert travel.expected_us(SITE, "door", "hall") == 8 * S
    travel.clear()
    assert travel.expected_us(SITE, "door", "hall") is None
