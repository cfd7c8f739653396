"""``multi_camera``: one real-world event seen by several cameras.

Two detections correlate when they are of the same or a similar detection
type (``similar_types`` in the configuration: person ~ human), from
different cameras and, unless configured otherwise, on the same controller
(multi-camera-correlation.md). Detections chain into passes: a detection
continues the pass of its candidate only from that pass's newest sighting,
and only on a camera the pass has not shown on yet. How plausible the
continuation is comes from the travel times learnt between cameras
(:mod:`corrmesh.correlation.camera_travel`); between cameras nothing is known
about yet, or for every pair with ``fixed_window`` set, it is the
multi-camera window (default 10 s): 1 at the same instant, falling linearly
to 0.5 at the window's edge. Every member of a pass
gets the pass's score, so the engine keeps the best pass as a whole.

Candidates come from the camera index, keyed by (controller, detection
class): a lookup reads only the newest detections of that key, however many
the window holds.
"""

from __future__ import annotations

from corrmesh.correlation.camera_travel import PLAUSIBLE, window_score
from corrmesh.correlation.strategies import CAMERA, Match, Strategy, StrategyContext, register
from corrmesh.correlation.strategies.signals import seconds_apart
from corrmesh.correlation.window import EventInfo

NAME = "multi_camera"


def detection_class(detection_type: str, context: StrategyContext) -> str:
    return context.camera_class.get(detection_type, detection_type)


class MultiCameraStrategy(Strategy):
    name = NAME
    indexes = frozenset({CAMERA})

    def applies_to(self, event: EventInfo) -> bool:
        return bool(event.camera_id and event.detection_type)

    def score(
        self, new_event: EventInfo, candidate: EventInfo, context: StrategyContext
    ) -> Match | None:
        if not candidate.camera_id or candidate.camera_id == new_event.camera_id:
            return None
        if context.camera_same_controller and candidate.controller_id != new_event.controller_id:
            return None
        if detection_class(candidate.detection_type, context) != detection_class(
            new_event.detection_type, context
        ):
            return None
        head, seen = context.camera_track(candidate)
        if new_event.camera_id in seen:
            return None  # a pass shows on each camera once
        lag_us = abs(new_event.occurred_us - head.occurred_us)
        travel, site = context.camera_travel, new_event.camera_key
        if travel is None:
            score = window_score(lag_us, context.camera_window_us)
        else:
            score = travel.plausibility(
                site, head.camera_id, new_event.camera_id, lag_us, seen, context.camera_window_us
            )
        if score < PLAUSIBLE:
            return None
        text = (
            f"{new_event.detection_type} seen by cameras {candidate.camera_id} and "
            f"{new_event.camera_id}"
        )
        if context.camera_same_controller:
            text += f" on controller {new_event.controller_id}"
        text += f", {seconds_apart(new_event.occurred_us, candidate.occurred_us)}"
        if travel is not None:
            expected = travel.expected_us(site, head.camera_id, new_event.camera_id)
            if expected is not None:
                text += (
                    f"; {lag_us / 1e6:.1f} s after {head.camera_id}, usually {expected / 1e6:.1f} s"
                )
        return Match(score, NAME, text)


register(MultiCameraStrategy)
