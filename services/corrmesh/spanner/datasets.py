"""DICOM identifiers and matches: levels, SOP classes, dedup keys, the wire form
(``DicomDataset``) and the audit form (keys with PHI redacted).

Matches are kept as pydicom Datasets whose values read as each source's own
Specific Character Set wrote them (see :func:`decoded`), and anything the
spanner sends on is UTF-8 (``ISO_IR 192``).
"""

from __future__ import annotations

from collections.abc import Iterator

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
_ENVELOPE_TAGS = {int(tag_for_keyword(k) or 0) for k in _ENVELOPE}
_LEVEL_TAGS = {level: int(tag_for_keyword(k) or 0) for level, k in LEVEL_KEYS.items()}
# Padding and empty name components: a value made only of these is absent.
_BLANK = " \x00=^"
REDACTED = "<redacted>"


def model_uid(model: int, service: str) -> str:
    """The SOP Class UID of ``service`` ("find", "move", "get") in ``model``."""
    return str(_MODELS[(model, service)])


def normalise_uid(value: object) -> str:
    """A UID (or ID) as compared for dedup: without space or NUL padding."""
    return str(value).strip(" \x00")


def dedup_key(dataset: Dataset, level: int) -> str:
    """The normalised identifying attribute of ``dataset`` at ``level``; empty when absent."""
    # By tag and without keyword lookup: this runs once per match (100,000s per query).
    element = dataset.get_item(_LEVEL_TAGS[level])
    if element is None:
        return ""
    value = element.value if isinstance(element, DataElement) else dataset[element.tag].value
    if isinstance(value, MultiValue):
        value = value[0] if value else ""
    if value is None or value == "":
        return ""
    return normalise_uid(value)


def is_present(element: DataElement) -> bool:
    """True when the element carries a value (empty strings and empty names do not count)."""
    value = element.value
    if value is None or value == "":
        return False
    if isinstance(value, str):
        return bool(value.strip(_BLANK))
    if isinstance(value, list | MultiValue):
        return any(str(v).strip(_BLANK) for v in value)
    return bool(str(value).strip(_BLANK))


def elements(dataset: Dataset) -> Iterator[DataElement]:
    """The elements of ``dataset`` in stored order, converted only when still raw
    (cheaper than iterating the Dataset, which sorts and checks every one)."""
    for element in dataset.values():
        yield element if isinstance(element, DataElement) else dataset[element.tag]


def completeness(dataset: Dataset) -> int:
    """How many attributes of a match really carry a value."""
    return sum(1 for e in elements(dataset) if e.tag not in _ENVELOPE_TAGS and is_present(e))


def decoded(dataset: Dataset) -> Dataset:
    """``dataset``, as received from a source, marked UTF-8: what the spanner sends on.

    Nothing is decoded here. pydicom converts each raw value, when it is first
    read, with the character set the dataset arrived in (``original_character_set``),
    and when the dataset is written with another one it converts the raw values
    it still holds and encodes them anew. So every value reads as its source
    wrote it, and goes out in UTF-8, without the cost of decoding each match in
    full on arrival (once more than the C-FIND response that brought it)."""
    dataset.SpecificCharacterSet = UTF8
    return dataset


def restrict(matches: list[Dataset], identifier: Dataset) -> list[Dataset]:
    """Each match with only the attributes the identifier asked for (sources differ
    in what else they send)."""
    keep = {element.tag for element in identifier} | {0x00080005}  # SpecificCharacterSet
    for dataset in matches:
        for tag in [e.tag for e in dataset.values() if e.tag not in keep]:
            del dataset[tag]
    return matches


def outgoing_identifier(identifier: Dataset) -> Dataset:
    """The identifier as sent to a PACS: UTF-8 only when a value needs it (some peers
    refuse a character set they do not know even for plain ASCII keys)."""
    out = Dataset()
    out.update(identifier)
    if all(str(e.value).isascii() for e in out if e.keyword != "SpecificCharacterSet"):
        if "SpecificCharacterSet" in out:
            del out.SpecificCharacterSet
    else:
        out.SpecificCharacterSet = UTF8
    return out


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
    attributes = out.attributes
    for element in dataset:
        vr = element.VR
        if vr == "SQ":
            continue
        # add() builds in place; append() would copy a finished message.
        attributes.add(
            tag=f"{element.tag:08X}", keyword=element.keyword, vr=vr, values=_values(element)
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
