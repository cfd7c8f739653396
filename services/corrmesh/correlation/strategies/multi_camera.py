"""``multi_camera``: one real-world event seen by several cameras.

Two detections correlate when they are at most the multi-camera window apart
(default 10 s), of the same or a similar detection type (``similar_types``
in the configuration: person ~ human), from different cameras and, unless
configured otherwise, on the same controller (multi-camera-correlation.md).
Score: 1 at the same instant, falling linearly to 0.5 at the window's edge,
so the nearest detection is preferred when several qualify.

Candidates come from the camera index, keyed by (controller, detection
class): a lookup reads only the newest detections of that key, however many
the window holds.
"""

from __future__ import annotations

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
        delta = abs(new_event.occurred_us - candidate.occurred_us)
        if delta > context.camera_window_us:
            return None
        if context.camera_same_controller and candidate.controller_id != new_event.controller_id:
            return None
        if detection_class(candidate.detection_type, context) != detection_class(
            new_event.detection_type, context
        ):
            return None
        score = 1.0 - 0.5 * delta / context.camera_window_us if context.camera_window_us else 1.0
        apart = seconds_apart(new_event.occurred_us, candidate.occurred_us)
        text = (
            f"{new_event.detection_type} seen by cameras {candidate.camera_id} and "
            f"{new_event.camera_id}"
        )
        if context.camera_same_controller:
            text += f" on controller {new_event.controller_id}"
        return Match(score, NAME, f"{text}, {apart}")


register(MultiCameraStrategy)
