"""DICOM processing-step events at chosen times, built as Ingest's SCP builds them."""

from __future__ import annotations

from corrmesh.ingest.dicom_steps import Association, Identifiers, Step, step_event
from corrmesh.v1 import event_pb2
from tests.support.correlation_events import BASE_TIME

RECEIVED = event_pb2.PROCESSING_STAGE_RECEIVED
STORED = event_pb2.PROCESSING_STAGE_STORED
FORWARDED = event_pb2.PROCESSING_STAGE_FORWARDED
BASE_NS = int(BASE_TIME.timestamp()) * 1_000_000_000
MS = 1_000_000


def association(association_id: str, calling: str = "MODALITY1") -> Association:
    return Association(association_id, calling, "CORRMESH_IN", "127.0.0.1")


def processing_step(
    of: Association,
    stage: event_pb2.ProcessingStage.ValueType,
    start_ms: float,
    duration_ms: float,
    *,
    sop: str = "1.2.826.0.1.3680043.10.1201.77.1.1",
    error: str = "",
    sequence: int = 0,
) -> event_pb2.Event:
    """The event of ``stage`` of instance ``sop``, ``start_ms`` after BASE_TIME."""
    started = BASE_NS + round(start_ms * MS)
    step = Step(stage, started_ns=started, completed_ns=started + round(duration_ms * MS))
    step.error = error
    ids = Identifiers(
        patient_id="PID-77",
        accession_number="ACC77",
        study_instance_uid="1.2.826.0.1.3680043.10.1201.77",
        series_instance_uid="1.2.826.0.1.3680043.10.1201.77.1",
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        modality="OT",
    )
    event = step_event(of, ids, step)
    event.sequence = sequence
    return event
