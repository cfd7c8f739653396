"""The engine's camera part: which pass a detection continues, and learning from it.

Detections are keyed by site (controller and detection class, see
:meth:`CameraPassesMixin.camera_key`). A detection's matches are narrowed to
the one pass that fits best (a person is on one path, not two); once it has
joined that pass, the step from the pass's newest sighting teaches the
cameras' travel times (:mod:`corrmesh.correlation.camera_travel`). After a
restart the steps are read back from the stored multi-camera edges.
"""

from __future__ import annotations

from collections.abc import Collection

from corrmesh.correlation.camera_travel import CameraStep, TravelTimes
from corrmesh.correlation.config import camera_classes
from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.strategies import Match, alone
from corrmesh.correlation.strategies.multi_camera import NAME as MULTI_CAMERA
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2

Matches = list[tuple[EventInfo, Match]]


class CameraPassesMixin:
    """Camera detections chained into passes (mixed into CorrelationEngine)."""

    groups: dict[str, GroupState]
    #: Made once with the engine: a new configuration keeps what was learnt.
    camera_travel: TravelTimes

    def configure_cameras(self, config: correlation_pb2.CorrelationConfig) -> None:
        """Reads the multi-camera settings of ``config``."""
        self._camera_same_controller = config.multi_camera.require_same_controller
        self.camera_class = camera_classes(config.multi_camera.similar_types)

    def camera_key(self, info: EventInfo) -> str:
        """The site of a detection (its key in the camera index); "" for other events."""
        if not info.camera_id or not info.detection_type:
            return ""
        return self._site_key(info.controller_id, info.detection_type)

    def _site_key(self, controller_id: str, detection_type: str) -> str:
        kind = self.camera_class.get(detection_type, detection_type)
        controller = controller_id if self._camera_same_controller else ""
        return f"{controller}\x1f{kind}"

    def camera_track(self, event: EventInfo) -> tuple[EventInfo, Collection[str]]:
        """The pass ``event`` belongs to: its newest sighting and the cameras it has
        shown on (``event`` alone while it is in no group)."""
        group = self.groups.get(event.group_id) if event.group_id else None
        if group is None or group.camera_head is None:
            return alone(event)
        return group.camera_head, group.cameras

    def relearn_travel(self, steps: list[CameraStep]) -> None:
        """Forgets the travel times and learns them again from stored ``steps``."""
        self.camera_travel.clear()
        for step in steps:
            site = self._site_key(step.controller_id, step.detection_type)
            self.camera_travel.observe(site, step.from_camera, step.to_camera, step.lag_us)

    def choose_pass(self, info: EventInfo, matches: Matches) -> tuple[Matches, EventInfo | None]:
        """``matches`` (best first) narrowed to the best pass when a camera match
        leads them, and that pass's newest sighting (None otherwise)."""
        if not info.camera_key or not matches or matches[0][1].strategy != MULTI_CAMERA:
            return matches, None
        best = matches[0][0]
        group_id = best.group_id
        kept = [
            (candidate, match)
            for candidate, match in matches
            if candidate is best or (group_id is not None and candidate.group_id == group_id)
        ]
        return kept, self.camera_track(best)[0]

    def learn_step(self, info: EventInfo, head: EventInfo | None) -> None:
        """Learns the travel time from ``head`` when ``info`` joined its pass."""
        if head is not None and info.group_id and info.group_id == head.group_id:
            lag_us = abs(info.occurred_us - head.occurred_us)
            self.camera_travel.observe(info.camera_key, head.camera_id, info.camera_id, lag_us)
