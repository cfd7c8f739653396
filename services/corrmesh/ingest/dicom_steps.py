"""DICOM processing steps as events: what the C-STORE SCP and the forwarder publish.

Every instance that arrives becomes one event per processing stage:

* ``RECEIVED`` (the data set arrived and its identifiers were read),
* ``STORED`` (written to the destination folder),
* ``FORWARDED`` (sent on to the configured PACS),

each ``DOMAIN_DICOM`` with :class:`~corrmesh.v1.event_pb2.DicomProcessingStep`
details carrying start and end time. A stage that fails is published as its
own event with outcome ``FAILED``, ``failed_stage`` set, ``type`` ``FAILED``
and an error message, so a timeline reads received → failed(stored).

All events of one association share one ``correlation_id`` (equal to the
``association_id`` in the details); ``fingerprint`` is
``dicom/<calling AE>/<type>`` so failures of one sender at one stage fold
together. Identifiers (patient id, accession, study/series/instance UIDs) go
into the details and the attributes; patient names and birth dates are never
read from the data set, so they cannot leak into events, logs or spans.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from io import BytesIO

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.values import convert_text

from corrmesh.v1 import event_pb2

SOURCE_PREFIX = "dicom-scp/"
RESOURCE_KIND = "DicomApplicationEntity"
FAILED_TYPE = "FAILED"

#: Data set keywords copied into events; nothing else is read from an instance.
IDENTIFIER_KEYWORDS = (
    "PatientID",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
)
#: Type 1 in every composite IOD: an instance without them cannot be filed.
REQUIRED_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
#: The highest tag among IDENTIFIER_KEYWORDS (Series Instance UID): reading stops after it.
_LAST_IDENTIFIER_TAG = 0x0020000E
_TAGS = {keyword: Tag(keyword) for keyword in IDENTIFIER_KEYWORDS}
#: Identifiers in the data set's character set (LO, SH); the others are UI and CS (ASCII).
_CHARSET_KEYWORDS = frozenset({"PatientID", "AccessionNumber"})
_SPECIFIC_CHARACTER_SET = 0x00080005


class MalformedInstanceError(ValueError):
    """The data set cannot be decoded or lacks a required identifier.

    The message names the problem, never a value from the data set.
    """


class UndecodableInstanceError(MalformedInstanceError):
    """An identifier element cannot be decoded at all."""


@dataclass(frozen=True, slots=True)
class Association:
    """One accepted association: the correlation id of everything it brings."""

    association_id: str
    calling_ae_title: str
    called_ae_title: str
    source_ip: str

    @classmethod
    def new(cls, calling: str, called: str, source_ip: str) -> Association:
        return cls(str(uuid.uuid4()), calling.strip(), called.strip(), source_ip)


@dataclass(frozen=True, slots=True)
class Identifiers:
    """What an instance is, as far as processing and correlation need to know."""

    patient_id: str = ""
    accession_number: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""


_IDENTIFIER_FIELDS = tuple(f.name for f in fields(Identifiers))


def _text(value: object) -> str:
    # UIDs may be padded with a trailing space or NUL (DICOM.md, pitfall 8).
    return str(value).strip().rstrip("\x00").strip() if value is not None else ""


def read_identifiers(dataset: Dataset) -> Identifiers:
    """The identifiers of ``dataset``; raises MalformedInstanceError when it cannot be read.

    pydicom decodes lazily, so a broken element only fails when touched:
    only the identifier elements are touched here.
    """
    return _identifiers(lambda keyword: _text(dataset.get(keyword)))


def _identifiers(value_of: Callable[[str], str]) -> Identifiers:
    values: dict[str, str] = {}
    for keyword in IDENTIFIER_KEYWORDS:
        try:
            values[keyword] = value_of(keyword)
        except Exception as exc:  # any decoding error of a malformed element
            raise UndecodableInstanceError(
                f"{keyword} cannot be decoded ({type(exc).__name__})"
            ) from exc
    missing = [k for k in REQUIRED_KEYWORDS if not values[k]]
    if missing:
        raise MalformedInstanceError(f"missing required attribute(s): {', '.join(missing)}")
    return Identifiers(
        patient_id=values["PatientID"],
        accession_number=values["AccessionNumber"],
        study_instance_uid=values["StudyInstanceUID"],
        series_instance_uid=values["SeriesInstanceUID"],
        sop_instance_uid=values["SOPInstanceUID"],
        sop_class_uid=values["SOPClassUID"],
        modality=values["Modality"],
    )


def _past_identifiers(tag: int, _vr: str | None, _length: int) -> bool:
    return tag > _LAST_IDENTIFIER_TAG


def read_encoded_identifiers(
    stream: BytesIO, is_implicit_vr: bool, is_little_endian: bool
) -> Identifiers:
    """:func:`read_identifiers` of an encoded (not deflated) data set.

    Parses elements only up to the last identifier, so pixel data and
    everything else after it are never looked at, however large the instance.
    The stream's position is left where it was.
    """
    position = stream.tell()
    stream.seek(0)
    try:
        dataset = read_dataset(
            stream, is_implicit_vr, is_little_endian, stop_when=_past_identifiers
        )
        encodings = _encodings(dataset)
    except Exception as exc:  # any decoding error of a malformed stream
        raise UndecodableInstanceError(
            f"data set cannot be decoded ({type(exc).__name__})"
        ) from exc
    finally:
        stream.seek(position)
    # The elements are still raw: decoding just their values with pydicom's
    # converters skips the Dataset machinery, the SCP's largest cost per instance.
    return _identifiers(lambda keyword: _raw_text(dataset, keyword, encodings))


def _encodings(dataset: Dataset) -> list[str]:
    """The Python codecs of the data set's Specific Character Set (raw element)."""
    element = dataset.get_item(_SPECIFIC_CHARACTER_SET)
    value = element.value if element is not None else None
    if not value:
        return [default_encoding]
    text = value.decode(default_encoding) if isinstance(value, bytes) else str(value)
    return convert_encodings([name.strip() for name in text.split("\\")])


def _raw_text(dataset: Dataset, keyword: str, encodings: list[str]) -> str:
    element = dataset.get_item(_TAGS[keyword])
    if element is None:
        return ""
    value = element.value
    if not isinstance(value, bytes):  # decoded already
        return _text(value)
    if keyword in _CHARSET_KEYWORDS:
        return _text(convert_text(value, encodings))
    return _text(value.decode(default_encoding))


@dataclass(slots=True)
class Step:
    """One processing stage of one instance, timed with the wall clock (ns)."""

    stage: event_pb2.ProcessingStage.ValueType
    started_ns: int = field(default_factory=time.time_ns)
    completed_ns: int = 0
    error: str = ""

    def done(self, error: str = "") -> Step:
        self.completed_ns = time.time_ns()
        self.error = error
        return self

    @property
    def failed(self) -> bool:
        return bool(self.error)


_STAGE_TITLES = {
    event_pb2.PROCESSING_STAGE_RECEIVED: "received",
    event_pb2.PROCESSING_STAGE_STORED: "stored",
    event_pb2.PROCESSING_STAGE_FORWARDED: "forwarded",
}


def step_event(association: Association, ids: Identifiers, step: Step) -> event_pb2.Event:
    """The event that records ``step`` of instance ``ids`` in ``association``."""
    stage_name = event_pb2.ProcessingStage.Name(step.stage).removeprefix("PROCESSING_STAGE_")
    failed = step.failed
    kind = FAILED_TYPE if failed else stage_name
    what = ids.modality or "DICOM"
    verb = _STAGE_TITLES.get(step.stage, stage_name.lower())
    if failed:
        title = f"{what} instance from {association.calling_ae_title} not {verb}: {step.error}"
    else:
        title = f"{what} instance {verb} from {association.calling_ae_title}"
    details = event_pb2.DicomProcessingStep(
        stage=step.stage,
        outcome=(
            event_pb2.PROCESSING_OUTCOME_FAILED
            if failed
            else event_pb2.PROCESSING_OUTCOME_SUCCEEDED
        ),
        association_id=association.association_id,
        calling_ae_title=association.calling_ae_title,
        called_ae_title=association.called_ae_title,
        source_ip=association.source_ip,
        patient_id=ids.patient_id,
        accession_number=ids.accession_number,
        study_instance_uid=ids.study_instance_uid,
        series_instance_uid=ids.series_instance_uid,
        sop_instance_uid=ids.sop_instance_uid,
        sop_class_uid=ids.sop_class_uid,
        modality=ids.modality,
        failed_stage=step.stage if failed else event_pb2.PROCESSING_STAGE_UNSPECIFIED,
        error_message=step.error,
    )
    details.started_at.FromNanoseconds(step.started_ns)
    details.completed_at.FromNanoseconds(step.completed_ns or step.started_ns)
    event = event_pb2.Event(
        correlation_id=association.association_id,
        domain=event_pb2.DOMAIN_DICOM,
        source=SOURCE_PREFIX + association.called_ae_title,
        resource=event_pb2.ResourceRef(kind=RESOURCE_KIND, name=association.calling_ae_title),
        severity=event_pb2.SEVERITY_ERROR if failed else event_pb2.SEVERITY_INFO,
        title=title[:1024],
        type=kind,
        fingerprint=f"dicom/{association.calling_ae_title}/{kind}",
        dicom=details,
    )
    event.occurred_at.CopyFrom(details.completed_at)
    attributes = event.attributes
    attributes["association_id"] = association.association_id
    attributes["calling_ae_title"] = association.calling_ae_title
    attributes["called_ae_title"] = association.called_ae_title
    attributes["source_ip"] = association.source_ip
    attributes["stage"] = stage_name
    for name in _IDENTIFIER_FIELDS:
        value = getattr(ids, name)
        if value:
            attributes[name] = value
    if failed:
        attributes["failed_stage"] = stage_name
    return event
