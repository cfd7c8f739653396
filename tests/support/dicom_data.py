"""The DICOM data the peer tests load, and the unions they expect, computed from it.

Real files that pydicom ships plus generated studies that overlap on purpose:
study G1 lives in all three peers with different series (A has two, B one
copy of A's first, dcmqrscp a third), conflicting StudyDescription, and the
same German patient name encoded ISO_IR 100 in A and ISO_IR 192 in B.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom import Dataset, dcmread
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

ROOT = "1.2.826.0.1.3680043.10.1201"
G1_STUDY = f"{ROOT}.1"
G1_SERIES = (f"{ROOT}.1.1", f"{ROOT}.1.2", f"{ROOT}.1.3")
G2_STUDY = f"{ROOT}.2"
G1_PATIENT_ID = "PID-G1"
G1_PATIENT_NAME = "Müller^Jürgen"
G1_DESCRIPTION = {"a": "Thorax", "b": "Thorax mit KM"}


def bundled(name: str) -> Dataset:
    """A file pydicom ships, by name (test files and character-set files)."""
    path = get_testdata_file(name)
    if path is None:
        matches = get_charset_files(name)
        if not matches:
            raise FileNotFoundError(name)
        path = matches[0]
    return dcmread(path)


def instance(
    study: str,
    series: str,
    number: int,
    *,
    charset: str,
    patient_name: str = G1_PATIENT_NAME,
    patient_id: str = G1_PATIENT_ID,
    description: str | None = None,
    modality: str = "CT",
    study_date: str = "20260115",
) -> Dataset:
    """A small Secondary Capture instance of ``series`` in ``study``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{series}.{number}")
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = f"{series}.{number}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "M"
    ds.StudyInstanceUID = study
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC" + study.rsplit(".", 1)[-1]
    ds.StudyID = "S" + study.rsplit(".", 1)[-1]
    ds.ReferringPhysicianName = ""
    if description is not None:
        ds.StudyDescription = description
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = int(series.rsplit(".", 1)[-1])
    ds.Modality = modality
    ds.InstanceNumber = number
    ds.ConversionType = "WSD"
    return ds


def corpus() -> dict[str, list[Dataset]]:
    """What each peer holds: "a" (Latin1 Orthanc), "b" (UTF-8 Orthanc), "c" (dcmqrscp)."""
    s1, s2, s3 = G1_SERIES
    a = [
        instance(G1_STUDY, s1, 1, charset="ISO_IR 100", description=G1_DESCRIPTION["a"]),
        instance(G1_STUDY, s1, 2, charset="ISO_IR 100", description=G1_DESCRIPTION["a"]),
        instance(G1_STUDY, s2, 1, charset="ISO_IR 100", description=G1_DESCRIPTION["a"]),
        bundled("CT_small.dcm"),
        bundled("chrGerm.dcm"),
    ]
    b = [
        instance(G1_STUDY, s1, 1, charset="ISO_IR 192", description=G1_DESCRIPTION["b"]),
        bundled("MR_small.dcm"),
        bundled("chrGreek.dcm"),
        bundled("chrRuss.dcm"),
    ]
    c = [
        instance(G1_STUDY, s3, 1, charset="ISO_IR 192", modality="MR"),
        instance(
            G2_STUDY,
            f"{G2_STUDY}.1",
            1,
            charset="ISO_IR 192",
            patient_name="Zweite^Studie",
            patient_id="PID-G2",
            description="Only in dcmqrscp",
            study_date="20250301",
        ),
        bundled("CT_small.dcm"),
        bundled("rtplan.dcm"),
        bundled("chrX1.dcm"),
        bundled("chrH31.dcm"),
    ]
    return {"a": a, "b": b, "c": c}


def uid(value: object) -> str:
    """A UID as compared: without padding."""
    return str(value).strip().rstrip("\x00")


LEVEL_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


def union(datasets: Iterable[Dataset], level: str, **where: str) -> set[str]:
    """The distinct keys of ``level`` among ``datasets`` whose attributes equal ``where``."""
    key = LEVEL_KEYS[level]
    return {
        uid(ds.get(key))
        for ds in datasets
        if all(uid(ds.get(name, "")) == value for name, value in where.items())
    }


def holders(loaded: dict[str, list[Dataset]], level: str, value: str) -> set[str]:
    """Which peers hold the entity ``value`` of ``level``."""
    key = LEVEL_KEYS[level]
    return {peer for peer, items in loaded.items() if any(uid(d.get(key)) == value for d in items)}
