"""What the SCP does with a received data set without pynetdicom's help: reading its
identifiers from the encoded stream, and writing it as a Part 10 file."""

from __future__ import annotations

import os
import shutil
import struct
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta, decode, encode_file_meta

from corrmesh.ingest.dicom_steps import (
    MalformedInstanceError,
    read_encoded_identifiers,
    read_identifiers,
)
from corrmesh.ingest.storage import FolderStore, part10_header
from tests.support.dicom_data import bundled, instance

ROOT = "1.2.826.0.1.3680043.10.1201.44"


def _encoded(ds: Dataset, implicit: bool) -> BytesIO:
    """``ds`` as a C-STORE request carries it: the data set alone, in one transfer syntax."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = implicit
    write_dataset(buffer, ds)
    return BytesIO(buffer.getvalue())


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize(
    ("charset", "patient_id"),
    [("ISO_IR 100", "Müller-7"), ("ISO_IR 192", "患者-42"), ("ISO_IR 144", "Иванов")],
)
def test_identifiers_read_from_the_stream_match_a_full_decode(
    implicit: bool, charset: str, patient_id: str
) -> None:
    ds = instance(
        f"{ROOT}.1", f"{ROOT}.1.1", 3, charset=charset, patient_id=patient_id, patient_name="Doe^J"
    )
    ds.add_new(0x7FE00010, "OW", bytes(512))
    stream = _encoded(ds, implicit)
    stream.seek(17)

    ids = read_encoded_identifiers(stream, implicit, True)

    assert ids == read_identifiers(ds)
    assert ids.patient_id == patient_id and ids.sop_instance_uid == f"{ROOT}.1.1.3"
    assert stream.tell() == 17  # left where it was: the file is written from it next


@pytest.mark.parametrize("name", ["chrH31.dcm", "chrX2.dcm", "chrI2.dcm", "CT_small.dcm"])
def test_identifiers_of_files_pydicom_ships(name: str) -> None:
    ds = bundled(name)
    assert read_encoded_identifiers(_encoded(ds, False), False, True) == read_identifiers(ds)


def test_reading_stops_after_the_last_identifier() -> None:
    ds = instance(f"{ROOT}.2", f"{ROOT}.2.1", 1, charset="ISO_IR 192")
    # After the identifiers, a sequence of undefined length whose item runs past
    # the end: decoding the whole data set fails on it, reading the identifiers does not.
    broken = struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    broken += b"\xfe\xff\x00\xe0" + struct.pack("<I", 100) + b"xx"
    stream = BytesIO(_encoded(ds, False).getvalue() + broken)
    with pytest.raises(OSError):
        decode(BytesIO(stream.getvalue()), False, True, False)
    assert read_encoded_identifiers(stream, False, True) == read_identifiers(ds)


def test_unusable_streams_are_refused_without_values() -> None:
    only_patient = Dataset()
    only_patient.PatientID = "P-123"
    with pytest.raises(MalformedInstanceError, match="StudyInstanceUID") as missing:
        read_encoded_identifiers(_encoded(only_patient, False), False, True)
    assert "P-123" not in str(missing.value)
    # pydicom reads leniently: garbage comes out as a data set without identifiers.
    with pytest.raises(MalformedInstanceError):
        read_encoded_identifiers(BytesIO(b"\x08\x00\x18\x00UI\xff\xffnot a dataset"), False, True)


@pytest.mark.parametrize(
    ("sop_instance", "syntax"),
    [(f"{ROOT}.3.1.1", "1.2.840.10008.1.2.1"), (f"{ROOT}.3.1.10", "1.2.840.10008.1.2")],
)
def test_the_file_header_is_what_pynetdicom_writes(sop_instance: str, syntax: str) -> None:
    sop_class = "1.2.840.10008.5.1.4.1.1.7"
    expected = encode_file_meta(
        create_file_meta(
            sop_class_uid=UID(sop_class),
            sop_instance_uid=UID(sop_instance),
            transfer_syntax=UID(syntax),
        )
    )
    assert part10_header(sop_class, sop_instance, syntax) == b"\x00" * 128 + b"DICM" + expected


def test_stored_files_read_back_and_a_removed_folder_comes_back(tmp_path: Path) -> None:
    ds = instance(f"{ROOT}.4", f"{ROOT}.4.1", 1, charset="ISO_IR 192")
    ds.add_new(0x7FE00010, "OW", bytes(range(256)) * 4)
    stream = _encoded(ds, False)
    ids = read_identifiers(ds)
    header = part10_header(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1")
    store = FolderStore(tmp_path / "dicom")

    path = store.write(ids, (header, stream.getbuffer()))
    shutil.rmtree(tmp_path / "dicom")  # a clean-up behind the SCP's back
    again = store.write(ids, (header, stream.getbuffer()))

    assert (
        again
        == path
        == tmp_path
        / "dicom"
        / ids.study_instance_uid
        / (f"{ids.series_instance_uid}/{ids.sop_instance_uid}.dcm")
    )
    stored = dcmread(path)
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData and stored.PatientID == ds.PatientID
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial files left


def test_new_names_are_flushed_before_the_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's data, its name in the series folder and the folders made for it
    all reach the disk before the C-STORE is answered."""
    ds = instance(f"{ROOT}.5", f"{ROOT}.5.1", 1, charset="ISO_IR 100")
    ids = read_identifiers(ds)
    header = part10_header(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    root = tmp_path / "dicom"
    path = FolderStore(root).write(ids, (header, _encoded(ds, False).getbuffer()))
    study = root / ids.study_instance_uid
    # The new folders' entries, then the data (under its temporary name), then the rename.
    assert set(synced[:-2]) == {str(tmp_path), str(root), str(study)}
    assert synced[-2].endswith(".part")
    assert synced[-1] == str(path.parent)

    synced.clear()
    FolderStore(root).write(ids, (header, _encoded(ds, False).getbuffer()))
    assert synced[-1] == str(path.parent) and len(synced) == 2, "no folder made this time"
    synced.clear()
    FolderStore(root, fsync=False).write(ids, (header, _encoded(ds, False).getbuffer()))
    assert synced == []
