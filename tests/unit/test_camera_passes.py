"""Camera detections chained into passes, with travel times learnt on the stream."""

from __future__ import annotations

from corrmesh.correlation.camera_travel import KNOWN_AFTER
from corrmesh.correlation.config import default_config
from tests.support.correlation_events import Feeder, camera, site_crossing, site_passes

SITE = "nvr-1\x1fperson"
#: Enough passes for every walk of the site to be known.
LEARNING = 2 * KNOWN_AFTER


def learnt_site() -> tuple[Feeder, float]:
    """A feeder that has seen LEARNING passes, and a quiet time after them."""
    feeder = Feeder()
    for built in site_passes(LEARNING):
        feeder.feed(built)
    return feeder, LEARNING * 60.0 + 120.0


def group_of(feeder: Feeder, event_id: str) -> str | None:
    return feeder.engine.window.events[event_id].group_id


def members(feeder: Feeder, event_id: str) -> set[str]:
    group_id = group_of(feeder, event_id)
    assert group_id is not None, f"{event_id} is in no group"
    return set(feeder.engine.groups[group_id].members)


def test_the_site_is_learnt_from_its_passes() -> None:
    feeder, _ = learnt_site()
    travel = feeder.engine.camera_travel
    for a, b, seconds in [("cam-door", "cam-hall", 4), ("cam-hall", "cam-yard", 9)]:
        expected = travel.expected_us(SITE, a, b)
        assert expected is not None and abs(expected - seconds * 1e6) < 0.5e6, (a, b)
    # Whole passes: four cameras each, in order.
    last = LEARNING - 1
    assert members(feeder, f"pass-{last}-cam-door") == {
        f"pass-{last}-{camera_id}" for camera_id in ("cam-door", "cam-hall", "cam-yard", "cam-gate")
    }


def test_a_walk_longer_than_the_window_continues_a_learnt_pass() -> None:
    feeder, at = learnt_site()
    feeder.feed(camera(at, "cam-hall", event_id="hall"))
    feeder.feed(camera(at + 11.5, "cam-yard", event_id="yard"))
    assert members(feeder, "yard") == {"hall", "yard"}
    (edge,) = feeder.engine.groups[str(group_of(feeder, "yard"))].edges
    assert "11.5 s after cam-hall, usually 9." in edge.reason

    unlearnt = Feeder()
    unlearnt.feed(camera(0, "cam-hall", event_id="hall"))
    unlearnt.feed(camera(11.5, "cam-yard", event_id="yard"))
    assert group_of(unlearnt, "yard") is None, "the 10 s window alone splits it"


def test_two_people_crossing_stay_two_passes() -> None:
    feeder, at = learnt_site()
    for built in site_crossing(at):
        feeder.feed(built)
    assert members(feeder, "in-door") == {"in-door", "in-hall", "in-yard"}
    assert members(feeder, "out-yard") == {"out-yard", "out-hall", "out-door"}

    unlearnt = Feeder()
    for built in site_crossing(0.0):
        unlearnt.feed(built)
    assert group_of(unlearnt, "in-door") == group_of(unlearnt, "out-yard"), (
        "without travel times, time and type alone mix the two"
    )


def test_a_known_walk_made_implausibly_fast_is_another_pass() -> None:
    feeder, at = learnt_site()
    feeder.feed(camera(at, "cam-door", event_id="door"))
    feeder.feed(camera(at + 0.5, "cam-hall", event_id="hall"))
    assert group_of(feeder, "hall") is None  # 0.5 s for a 4 s walk

    unlearnt = Feeder()
    unlearnt.feed(camera(0, "cam-door", event_id="door"))
    unlearnt.feed(camera(0.5, "cam-hall", event_id="hall"))
    assert group_of(unlearnt, "hall") is not None


def test_a_pass_shows_on_each_camera_once() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-door", event_id="door"))
    feeder.feed(camera(3, "cam-hall", event_id="hall"))
    feeder.feed(camera(6, "cam-door", event_id="door-again"))
    assert members(feeder, "hall") == {"door", "hall"}
    assert group_of(feeder, "door-again") is None


def test_a_detection_continues_from_the_newest_sighting_of_a_pass() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-door", event_id="door"))
    feeder.feed(camera(8, "cam-hall", event_id="hall"))
    # 12 s after the door but 4 s after the hall: the pass is at the hall now.
    feeder.feed(camera(12, "cam-yard", event_id="yard"))
    assert members(feeder, "yard") == {"door", "hall", "yard"}
    (update,) = [g for g in feeder.engine.groups.values()]
    reasons = {(e.from_event_id, e.to_event_id) for e in update.edges}
    assert ("hall", "yard") in reasons and ("door", "yard") in reasons


def test_a_fixed_window_sets_what_was_learnt_aside() -> None:
    feeder, at = learnt_site()
    config = default_config()
    config.multi_camera.fixed_window = True
    feeder.engine.set_config(config)
    feeder.feed(camera(at, "cam-door", event_id="door"))
    feeder.feed(camera(at + 0.5, "cam-hall", event_id="hall"))
    assert members(feeder, "hall") == {"door", "hall"}, "the window alone decides"
    feeder.feed(camera(at + 100, "cam-hall", event_id="hall-2"))
    feeder.feed(camera(at + 111.5, "cam-yard", event_id="yard-2"))
    assert group_of(feeder, "yard-2") is None
    # What was learnt is kept for when the window is no longer fixed.
    feeder.engine.set_config(default_config())
    feeder.feed(camera(at + 200, "cam-hall", event_id="hall-3"))
    feeder.feed(camera(at + 211.5, "cam-yard", event_id="yard-3"))
    assert members(feeder, "yard-3") == {"hall-3", "yard-3"}
