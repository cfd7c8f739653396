"""QIDO-RS searches against a DICOMweb source, with the same identifiers as C-FIND.

Matching keys become query parameters (``PatientID=12*``, date ranges as they
are, UID lists with commas), return keys become ``includefield``. QIDO has no
patient resource, so a PATIENT-level query searches studies and folds them by
Patient ID.
"""

from __future__ import annotations

import httpx
from pydicom import Dataset
from pydicom.multival import MultiValue

from corrmesh.spanner.datasets import UTF8, normalise_uid
from corrmesh.v1 import spanner_pb2 as pb

DICOM_JSON = "application/dicom+json"
_ENVELOPE = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}


def search_path(level: int, identifier: Dataset) -> str:
    """The QIDO resource for ``level``, nested under a single study when one is named."""
    study = _single(identifier, "StudyInstanceUID")
    series = _single(identifier, "SeriesInstanceUID")
    if level in (pb.QUERY_LEVEL_PATIENT, pb.QUERY_LEVEL_STUDY):
        return "/studies"
    if level == pb.QUERY_LEVEL_SERIES:
        return f"/studies/{study}/series" if study else "/series"
    if study and series:
        return f"/studies/{study}/series/{series}/instances"
    return f"/studies/{study}/instances" if study else "/instances"


def _single(identifier: Dataset, keyword: str) -> str:
    value = identifier.get(keyword)
    if value is None or isinstance(value, MultiValue):
        return ""
    text = normalise_uid(value)
    return text if text and not any(c in text for c in "*?\\") else ""


def query_params(identifier: Dataset) -> list[tuple[str, str | int | float | bool | None]]:
    """Matching keys as parameters and return keys as includefield."""
    params: list[tuple[str, str | int | float | bool | None]] = []
    for element in identifier:
        keyword = element.keyword or f"{element.tag:08X}"
        if keyword in _ENVELOPE or element.VR == "SQ":
            continue
        value = element.value
        if isinstance(value, list | MultiValue):
            text = ",".join(str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        if text.strip() and text != "*":
            params.append((keyword, text))
        else:
            params.append(("includefield", keyword))
    return params


async def search(
    client: httpx.AsyncClient, base_url: str, level: int, identifier: Dataset, timeout: float
) -> list[Dataset]:
    """Matches from one DICOMweb source; raises httpx errors on failure."""
    response = await client.get(
        base_url.rstrip("/") + search_path(level, identifier),
        params=query_params(identifier),
        headers={"Accept": DICOM_JSON},
        timeout=timeout,
    )
    if response.status_code == 204:
        return []
    response.raise_for_status()
    matches = []
    for item in response.json() if response.content else []:
        dataset = Dataset.from_json(item)
        dataset.SpecificCharacterSet = UTF8
        matches.append(dataset)
    if level == pb.QUERY_LEVEL_PATIENT:
        return _patients(matches)
    return matches


def _patients(studies: list[Dataset]) -> list[Dataset]:
    """Studies folded into one entry per Patient ID, keeping patient-level attributes."""
    seen: dict[str, Dataset] = {}
    for study in studies:
        key = normalise_uid(study.get("PatientID", ""))
        if key and key not in seen:
            seen[key] = study
    return list(seen.values())
