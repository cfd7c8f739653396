"""DICOM identifiers and matches: levels, SOP classes, dedup keys, the wire form
(``DicomDataset``) and the audit form (keys with PHI redacted).

Matches are kept as decoded pydicom Datasets: each source's response is
decoded with its own Specific Character Set on arrival, and anything the
spanner sends on is UTF-8 (``ISO_IR 192``).
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from corrmesh.v1 import spanner_pb2 as pb

UTF8 = "ISO_IR 192"

LEVEL_NAMES: dict[int, str] = {
    pb.QUERY_LEVEL_PATIENT: "PATIENT",
    pb.QUERY_LEVEL_STUDY: "STUDY",
    pb.QUERY_LEVEL_SERIES: "SERIES",
    pb.QUERY_LEVEL_IMAGE: "IMAGE",
}
LEVELS_BY_NAME = {name: level for level, name in LEVEL_NAMES.items()}

#: The attribute that identifies one entity of each level; duplicates share it.
LEVEL_KEYS: dict[int, str] = {
    pb.QUERY_LEVEL_PATIENT: "PatientID",
    pb.QUERY_LEVEL_STUDY: "StudyInstanceUID",
    pb.QUERY_LEVEL_SERIES: "SeriesInstanceUID",
    pb.QUERY_LEVEL_IMAGE: "SOPInstanceUID",
}

#: (information model, service) -> SOP Class UID.
_PATIENT, _STUDY = int(pb.INFORMATION_MODEL_PATIENT_ROOT), int(pb.INFORMATION_MODEL_STUDY_ROOT)
_QR = "1.2.840.10008.5.1.4.1.2"
_MODELS: dict[tuple[int, str], str] = {
    (_PATIENT, "find"): f"{_QR}.1.1",
    (_PATIENT, "move"): f"{_QR}.1.2",
    (_PATIENT, "get"): f"{_QR}.1.3",
    (_STUDY, "find"): f"{_QR}.2.1",
    (_STUDY, "move"): f"{_QR}.2.2",
    (_STUDY, "get"): f"{_QR}.2.3",
}
MODELS_BY_UID = {str(uid): model for (model, _service), uid in _MODELS.items()}

# Elements that describe the message, not the entity: not counted, not merged.
_ENVELOPE = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
REDACTED = "<redacted>"


def model_uid(model: int, service: str) -> str:
    """The SOP Class UID of ``service`` ("find", "move", "get") in ``model``."""
    return str(_MODELS[(model, service)])


def normalise_uid(value: object) -> str:
    """A UID (or ID) as compared for dedup: without space or NUL padding."""
    return str(value).strip(" \x00")


def dedup_key(dataset: Dataset, level: int) -> str:
    """The normalised identifying attribute of ``dataset`` at ``level``; empty when absent."""
    value = dataset.get(LEVEL_KEYS[level])
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue):
        value = value[0] if value else ""
    return normalise_uid(value)


def is_present(element: DataElement) -> bool:
    """True when the element carries a value (empty strings and empty names do not count)."""
    return any(v.strip(" \x00=^") for v in _values(element))


def completeness(dataset: Dataset) -> int:
    """How many attributes of a match really carry a value."""
    return sum(1 for e in dataset if e.keyword not in _ENVELOPE and is_present(e))


def decoded(dataset: Dataset) -> Dataset:
    """``dataset`` with every text value decoded by its own character set, marked UTF-8."""
    dataset.decode()
    dataset.SpecificCharacterSet = UTF8
    return dataset


def restrict(dataset: Dataset, identifier: Dataset) -> Dataset:
    """Only the attributes the identifier asked for (sources differ in what else they send)."""
    keep = {element.tag for element in identifier} | {0x00080005}  # SpecificCharacterSet
    for tag in [element.tag for element in dataset if element.tag not in keep]:
        del dataset[tag]
    return dataset


def level_of(identifier: Dataset) -> int:
    """The pb level of an identifier's QueryRetrieveLevel; UNSPECIFIED when unknown."""
    return LEVELS_BY_NAME.get(str(identifier.get("QueryRetrieveLevel", "")).strip().upper(), 0)


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, list | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def to_proto(dataset: Dataset) -> pb.DicomDataset:
    """The wire form: tag, keyword, VR and string values (PN "Alphabetic=Ideographic=Phonetic")."""
    out = pb.DicomDataset()
    for element in dataset:
        if element.VR == "SQ":
            continue
        out.attributes.append(
            pb.DicomAttribute(
                tag=f"{element.tag:08X}",
                keyword=element.keyword,
                vr=element.VR,
                values=_values(element),
            )
        )
    return out


def from_proto(message: pb.DicomDataset, field: str = "identifier") -> tuple[Dataset, list[str]]:
    """A Dataset from the wire form, and (field, problem) violations for unusable attributes."""
    dataset = Dataset()
    problems: list[str] = []
    for index, attribute in enumerate(message.attributes):
        tag = _tag_of(attribute)
        if tag is None:
            problems.append(f"{field}.attributes[{index}]")
            continue
        vr = attribute.vr or _dictionary_vr(tag)
        if not vr or vr == "SQ":
            problems.append(f"{field}.attributes[{index}]")
            continue
        values = list(attribute.values)
        value: object = values[0] if len(values) == 1 else (values or "")
        dataset.add_new(tag, vr, value)
    dataset.SpecificCharacterSet = UTF8
    return dataset, problems


def _tag_of(attribute: pb.DicomAttribute) -> int | None:
    if attribute.tag:
        try:
            return int(Tag(int(attribute.tag, 16)))
        except ValueError:
            return None
    found = tag_for_keyword(attribute.keyword) if attribute.keyword else None
    return int(found) if found is not None else None


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def redacted_keys(identifier: Dataset) -> dict[str, str]:
    """The query keys for the audit log: names (PN) and birth dates/times are redacted."""
    keys: dict[str, str] = {}
    for element in identifier:
        if element.keyword in _ENVELOPE or element.VR == "SQ":
            continue
        name = element.keyword or keyword_for_tag(element.tag) or f"{element.tag:08X}"
        text = "\\".join(_values(element))
        if text and (element.VR == "PN" or "Birth" in name):
            text = REDACTED
        keys[name] = text
    return keys
