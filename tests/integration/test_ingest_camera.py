"""Camera smart detections published through gRPC Publish: validated, stored, queryable."""

from __future__ import annotations

from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.ingest import ingest_server, make_event, status_fields

#: A person walks down a corridor past three cameras of one controller, 4 s apart.
WALK = (("cam-entrance", 0, 0.91), ("cam-corridor", 4, 0.84), ("cam-stairs", 8, 0.77))


def detection(camera: str, offset: float, confidence: float, **fields: object) -> event_pb2.Event:
    values: dict[str, object] = {
        "camera_id": camera,
        "controller_id": "unifi-nvr-1",
        "detection_type": "person",
        "confidence": confidence,
        "zone": "ground-floor",
    }
    values.update(fields)
    return make_event(
        offset,
        domain=event_pb2.DOMAIN_CAMERA,
        source="unifi-protect/nvr-1",
        title=f"Person detected by {camera}",
        type="person",
        resource=event_pb2.ResourceRef(kind="Camera", name=camera),
        camera=event_pb2.CameraDetection(**values),  # type: ignore[arg-type]
    )


async def test_person_walking_past_three_cameras(database_url: str) -> None:
    walk = [detection(camera, offset, confidence) for camera, offset, confidence in WALK]
    bad = [
        detection("cam-garage", 9, 1.5),
        detection("", 10, 0.5, controller_id=""),
        detection("cam-roof", 11, float("nan"), detection_type=""),
    ]
    async with ingest_server(database_url) as (_app, stub):
        response = await stub.Publish(ingest_pb2.PublishRequest(events=[*walk, *bad]))
        listed = await stub.ListEvents(
            ingest_pb2.ListEventsRequest(
                filter=ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_CAMERA], types=["person"])
            )
        )

    assert (response.accepted_count, response.rejected_count) == (3, 3)
    assert [status_fields(r.error) for r in response.results[3:]] == [
        ["events[3].camera.confidence"],
        ["events[4].camera.camera_id", "events[4].camera.controller_id"],
        ["events[5].camera.detection_type", "events[5].camera.confidence"],
    ]
    stored = [e.camera for e in listed.events]
    assert [c.camera_id for c in stored] == [camera for camera, _, _ in WALK]
    assert {c.controller_id for c in stored} == {"unifi-nvr-1"}
    assert [round(c.confidence, 2) for c in stored] == [0.91, 0.84, 0.77]
    times = [e.occurred_at.seconds for e in listed.events]
    assert [t - times[0] for t in times] == [0, 4, 8]
