"""The eight acceptance criteria of multi-camera-correlation.md, on the engine.

AC1 (end to end through Ingest) and AC6 (correlation does not block event
creation) are also shown over gRPC in tests/integration/test_correlation_cameras.py.
"""

from __future__ import annotations

import uuid

from google.protobuf import duration_pb2

from corrmesh.correlation.config import default_config
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.strategies import StrategyContext
from corrmesh.correlation.strategies.multi_camera import MultiCameraStrategy
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2
from tests.support.correlation_events import Feeder, camera


def members(feeder: Feeder, event_id: str) -> set[str]:
    engine = feeder.engine
    group_id = engine.window.events[event_id].group_id
    assert group_id is not None, f"{event_id} is in no group"
    return set(engine.groups[group_id].members)


def group_of(feeder: Feeder, event_id: str) -> str | None:
    return feeder.engine.window.events[event_id].group_id


def test_ac1_one_person_past_three_cameras_is_one_group() -> None:
    feeder = Feeder()
    feeder.feed(camera(0.0, "cam-door", event_id="door"))
    feeder.feed(camera(3.5, "cam-hall", event_id="hall"))
    feeder.feed(camera(7.0, "cam-yard", event_id="yard"))
    assert members(feeder, "yard") == {"door", "hall", "yard"}
    group = next(iter(feeder.engine.groups.values()))
    assert group.type == correlation_pb2.GROUP_TYPE_MULTI_CAMERA
    assert {e.strategy for e in group.edges} == {"multi_camera"}


def _pair(first: EventInfo, second: EventInfo, **context: object) -> float | None:
    found = MultiCameraStrategy().score(
        second,
        first,
        StrategyContext(window_us=300_000_000, **context),  # type: ignore[arg-type]
    )
    return None if found is None else found.score


def test_ac2_window_type_camera_and_controller_rules() -> None:
    person_door = EventInfo.from_event(camera(0, "cam-door"))
    assert _pair(person_door, EventInfo.from_event(camera(9.9, "cam-hall"))) is not None
    assert _pair(person_door, EventInfo.from_event(camera(10.1, "cam-hall"))) is None, "window"
    assert _pair(person_door, EventInfo.from_event(camera(2, "cam-hall", "vehicle"))) is None
    assert _pair(person_door, EventInfo.from_event(camera(2, "cam-door"))) is None, "same camera"
    other_nvr = EventInfo.from_event(camera(2, "cam-hall", controller_id="nvr-2"))
    assert _pair(person_door, other_nvr) is None, "another controller"
    assert _pair(person_door, other_nvr, camera_same_controller=False) is not None
    human = EventInfo.from_event(camera(2, "cam-hall", "human"))
    assert _pair(person_door, human) is None
    assert _pair(person_door, human, camera_class={"human": "human", "person": "human"})


def test_ac2_window_and_similar_types_are_configurable() -> None:
    config = default_config()
    config.multi_camera.window.CopyFrom(duration_pb2.Duration(seconds=30))
    config.multi_camera.similar_types["person"] = "human,pedestrian"
    feeder = Feeder(CorrelationEngine(config))
    feeder.feed(camera(0, "cam-a", "person", event_id="a"))
    feeder.feed(camera(25, "cam-b", "pedestrian", event_id="b"))
    assert members(feeder, "b") == {"a", "b"}


def test_ac3_first_group_gets_a_uuid_and_the_others_share_it() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-a", event_id="a"))
    assert group_of(feeder, "a") is None  # alone, no group yet
    feeder.feed(camera(1, "cam-b", event_id="b"))
    feeder.feed(camera(2, "cam-c", event_id="c"))
    group_id = group_of(feeder, "a")
    assert group_id is not None and uuid.UUID(group_id).version == 4
    assert group_of(feeder, "b") == group_of(feeder, "c") == group_id


def test_ac4_each_member_lists_its_correlated_event_ids() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-a", event_id="a"))
    feeder.feed(camera(1, "cam-b", event_id="b"))
    (update,) = feeder.feed(camera(2, "cam-c", event_id="c"))
    (c,) = update.group.members
    assert set(c.correlated_event_ids) == {"a", "b"}
    group = feeder.engine.groups[update.group.group_id]
    assert set(group.neighbours["a"]) == {"b", "c"}


def test_ac5_candidates_come_from_the_index_not_the_whole_buffer() -> None:
    feeder = Feeder()
    # 60 s of busy cameras on other controllers and other detection types.
    for i in range(3000):
        feeder.feed(camera(i * 0.02, f"cam-{i % 40}", "vehicle", controller_id=f"nvr-{i % 7}"))
    feeder.feed(camera(59.0, "cam-door", event_id="door"))
    plan = feeder.engine.prepare(camera(60.0, "cam-hall", event_id="hall"))
    assert len(feeder.engine.window) == 3001
    assert [c.event.event_id for c in plan.candidates] == ["door"]


def test_ac6_correlation_is_separate_from_storing_the_event() -> None:
    # The engine never stores events: Ingest has made them durable before
    # Correlation reads them (see the integration test for the timing).
    feeder = Feeder()
    plan = feeder.engine.prepare(camera(0, "cam-a", event_id="a"))
    assert plan.event.event_id == "a" and not plan.late


def test_ac7_an_event_matching_several_joins_their_existing_group() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-a", event_id="a"))
    feeder.feed(camera(1, "cam-b", event_id="b"))
    group_id = group_of(feeder, "a")
    (update,) = feeder.feed(camera(2, "cam-c", event_id="c"))
    assert update.type == correlation_pb2.GROUP_UPDATE_TYPE_MEMBER_ADDED
    assert update.group.group_id == group_id
    assert len(feeder.engine.groups) == 1


def test_ac8_two_simultaneous_events_share_one_group() -> None:
    feeder = Feeder()
    feeder.feed(camera(5.0, "cam-a", event_id="a"))
    (update,) = feeder.feed(camera(5.0, "cam-b", event_id="b"))
    assert update.type == correlation_pb2.GROUP_UPDATE_TYPE_CREATED
    assert group_of(feeder, "a") == group_of(feeder, "b") == update.group.group_id


def test_same_camera_twice_is_not_correlated_by_default() -> None:
    feeder = Feeder()
    feeder.feed(camera(0, "cam-a", event_id="a"))
    assert feeder.feed(camera(1, "cam-a", event_id="a2")) == []
