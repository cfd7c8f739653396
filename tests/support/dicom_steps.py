"""DICOM processing-step events as Ingest's C-STORE SCP publishes them, for Correlation tests."""

from __future__ import annotations

import itertools
from datetime import timedelta

from corrmesh.ingest.dicom_steps import Association, Identifiers, Step, step_event
from corrmesh.v1 import event_pb2
from tests.support.correlation_events import BASE_TIME

RECEIVED = event_pb2.PROCESSING_STAGE_RECEIVED
STORED = event_pb2.PROCESSING_STAGE_STORED
FORWARDED = event_pb2.PROCESSING_STAGE_FORWARDED
#: A patient id that must never show up outside the events themselves.
PATIENT = "MRN-7715-0042"
_numbers = itertools.count(1)


def association(calling: str = "MODALITY1", number: int | None = None) -> Association:
    """An accepted association with a predictable id."""
    n = number if number is not None else next(_numbers)
    return Association(f"assoc-{calling}-{n:04d}", calling, "CORRMESH_IN", "10.1.2.3")


def identifiers(
    patient: str = PATIENT, accession: str = "ACC-1", study: str = "1.2.826.0.1.9", number: int = 1
) -> Identifiers:
    return Identifiers(
        patient_id=patient,
        accession_number=accession,
        study_instance_uid=study,
        series_instance_uid=f"{study}.1",
        sop_instance_uid=f"{study}.1.{number}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        modality="CT",
    )


def step(
    assoc: Association,
    ids: Identifiers,
    stage: int,
    at: float,
    error: str = "",
    event_id: str | None = None,
) -> event_pb2.Event:
    """The event of one stage of one instance, ``at`` seconds after BASE_TIME (event time)."""
    moment = int((BASE_TIME + timedelta(seconds=at)).timestamp() * 1e9)
    done = Step(stage, started_ns=moment - 1_000_000)  # type: ignore[arg-type]
    done.completed_ns, done.error = moment, error
    event = step_event(assoc, ids, done)
    event.event_id = event_id or f"{assoc.association_id}/{ids.sop_instance_uid}/{stage}"
    return event


def instance(
    assoc: Association, ids: Identifiers, at: float, stored: bool = True, error: str = ""
) -> list[event_pb2.Event]:
    """RECEIVED, then STORED (or STORED failed with ``error``) unless ``stored`` is False."""
    events = [step(assoc, ids, RECEIVED, at)]
    if stored or error:
        events.append(step(assoc, ids, STORED, at + 0.01, error))
    return events
