"""What Correlation reads from a DICOM processing step, and the ids it derives.

A **batch** is one exam of one patient: same patient id and accession number,
or, when the modality sent no accession, same patient id and study instance
UID. A **patient** is one patient id (one issuer per edge is assumed: there
is no IssuerOfPatientID in the events).

Their ids are keyed hashes (HMAC-SHA256 under a random key the store keeps,
128 bits shown): ``dicom-batch-<hex>`` and ``dicom-patient-<hex>``. Each is
both the correlation id that ``LinkCorrelations``/``ListRelated`` use and the
id of the group, so an id ``ListRelated`` returns can be passed to
``GetGroup`` as it is. A plain hash of a patient id could be reversed by
trying every medical record number; a keyed one cannot without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from corrmesh.v1 import event_pb2
from corrmesh.v1.correlation_pb2 import GROUP_TYPE_BATCH, GROUP_TYPE_PATIENT

#: Groups derived from identifiers, whose members are copies (see rollups).
ROLLUP_TYPES = frozenset({GROUP_TYPE_BATCH, GROUP_TYPE_PATIENT})
BATCH_PREFIX = "dicom-batch-"
PATIENT_PREFIX = "dicom-patient-"
#: Hex digits of the HMAC kept in an id (128 bits).
ID_HEX = 32
#: (patient id, exam key) pairs whose ids are remembered: instances of one exam repeat them.
CACHE_ENTRIES = 4096
_FAILED = event_pb2.PROCESSING_OUTCOME_FAILED


@dataclass(frozen=True, slots=True)
class DicomStep:
    """One processing step as the batch, patient and alert logic need it."""

    #: The stage the step is about: the failed stage for a failure.
    stage: int
    outcome: int
    calling_ae: str
    #: Group (and correlation) id of the batch; "" without accession and study.
    batch_id: str
    #: Group (and correlation) id of the patient; "" without a patient id.
    patient_id: str
    #: "accession <number>" or "study <uid>": what titles and alerts name.
    exam: str
    modality: str

    @property
    def failed(self) -> bool:
        return self.outcome == _FAILED


class DicomKeys:
    """Derives batch and patient ids under one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[tuple[str, str], tuple[str, str]] = {}

    def _digest(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:ID_HEX]

    def ids(self, patient: str, exam_key: str) -> tuple[str, str]:
        """(batch id, patient id) of a patient id and an exam key; "" where one is empty."""
        cache_key = (patient, exam_key)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        batch = BATCH_PREFIX + self._digest("batch", patient, exam_key) if exam_key else ""
        person = PATIENT_PREFIX + self._digest("patient", patient) if patient else ""
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[cache_key] = (batch, person)
        return batch, person

    def step(self, event: event_pb2.Event) -> DicomStep | None:
        """The step ``event`` records, or None for an event without DICOM details."""
        if event.WhichOneof("details") != "dicom":
            return None
        details = event.dicom
        stage = details.stage
        if details.outcome == _FAILED and details.failed_stage:
            stage = details.failed_stage
        accession = details.accession_number.strip()
        study = details.study_instance_uid.strip()
        if accession:
            exam_key, exam = f"accession:{accession}", f"accession {accession}"
        elif study:
            exam_key, exam = f"study:{study}", f"study {study}"
        else:
            exam_key, exam = "", ""
        batch, patient = self.ids(details.patient_id.strip(), exam_key)
        return DicomStep(
            stage=stage,
            outcome=details.outcome,
            calling_ae=details.calling_ae_title,
            batch_id=batch,
            patient_id=patient,
            exam=exam,
            modality=details.modality,
        )


def short_id(group_id: str) -> str:
    """The first 8 hex digits of a derived id: enough for a person to tell two apart."""
    return group_id.rsplit("-", 1)[-1][:8]
