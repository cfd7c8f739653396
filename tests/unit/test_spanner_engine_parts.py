"""Dedup strategies, audit redaction, source health/back-off, the TTL cache and
the events published for failed sources."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import Dataset
from pynetdicom.dsutils import decode, encode

from corrmesh.spanner.alerts import source_event
from corrmesh.spanner.datasets import UTF8, decoded, dedup_key, from_proto, redacted_keys, to_proto
from corrmesh.spanner.dedup import Deduplicator
from corrmesh.spanner.health import HealthTracker, TtlCache, seconds_to_duration
from corrmesh.v1 import event_pb2
from corrmesh.v1 import spanner_pb2 as pb


def study(uid: str, **attrs: str | list[str]) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = uid
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def fold(strategy: int, *versions: tuple[Dataset, str, int]) -> tuple[Dataset, list[str]]:
    dedup = Deduplicator(strategy)
    for dataset, node, priority in versions:
        dedup.add(dedup_key(dataset, pb.QUERY_LEVEL_STUDY), dataset, node, priority)
    (only,) = list(dedup.results())
    return only.dataset, list(only.node_ids)


def test_uid_padding_does_not_split_a_match() -> None:
    assert dedup_key(study("1.2.3 "), pb.QUERY_LEVEL_STUDY) == "1.2.3"
    dedup = Deduplicator(pb.DEDUPLICATION_STRATEGY_FIRST_WINS)
    assert dedup.add("1.2.3", study("1.2.3"), "a", 0) is True
    assert dedup.add("1.2.3", study("1.2.3 "), "b", 1) is False
    assert (len(dedup), dedup.before) == (1, 2)


def test_first_wins_keeps_the_first_arrival() -> None:
    first = study("1", StudyDescription="late source")
    dataset, nodes = fold(
        pb.DEDUPLICATION_STRATEGY_FIRST_WINS, (first, "b", 1), (study("1"), "a", 0)
    )
    assert dataset is first and nodes == ["a", "b"]


def test_most_complete_counts_real_values_and_ties_go_to_priority() -> None:
    sparse = study("1", StudyDescription="", PatientName="^")
    full = study("1", StudyDescription="Thorax", PatientID="P")
    dataset, _ = fold(pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE, (sparse, "a", 0), (full, "b", 1))
    assert dataset is full
    tie_a, tie_b = study("1", PatientID="A"), study("1", PatientID="B")
    dataset, _ = fold(pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE, (tie_b, "b", 1), (tie_a, "a", 0))
    assert dataset is tie_a


def test_merge_all_fills_each_attribute_from_the_preferred_source() -> None:
    preferred = study("1", StudyDescription="", PatientID="P1")
    other = study("1", StudyDescription="From B", PatientID="P2", AccessionNumber="X")
    dataset, nodes = fold(pb.DEDUPLICATION_STRATEGY_MERGE_ALL, (other, "b", 1), (preferred, "a", 0))
    assert (dataset.PatientID, dataset.StudyDescription, dataset.AccessionNumber) == (
        "P1", "From B", "X",
    )  # fmt: skip
    assert nodes == ["a", "b"]

    assert "StudyDescription" in preferred and not preferred.StudyDescription
    assert "AccessionNumber" not in preferred  # the sources' own copies stay as they were


def test_merge_all_keeps_the_preferred_copy_when_the_others_add_nothing() -> None:
    preferred = study("1", StudyDescription="Thorax", PatientID="P1")
    other = study("1", StudyDescription="", PatientID="P2")
    dataset, nodes = fold(pb.DEDUPLICATION_STRATEGY_MERGE_ALL, (other, "b", 1), (preferred, "a", 0))
    assert dataset is preferred and nodes == ["a", "b"]


def test_audit_keys_never_carry_names_or_birth_dates() -> None:
    ds = study("1.2", PatientName="Müller^Jürgen", PatientBirthDate="19600101", PatientID="")
    ds.QueryRetrieveLevel = "STUDY"
    keys = redacted_keys(ds)
    assert keys == {
        "StudyInstanceUID": "1.2", "PatientName": "<redacted>",
        "PatientBirthDate": "<redacted>", "PatientID": "",
    }  # fmt: skip


def test_wire_form_round_trips_and_names_bad_attributes() -> None:
    ds = study("1.2", PatientName="Wang^XiaoDong=王^小東", ModalitiesInStudy=["CT", "MR"])
    back, problems = from_proto(to_proto(ds))
    assert problems == []
    assert str(back.PatientName) == "Wang^XiaoDong=王^小東"
    assert list(back.ModalitiesInStudy) == ["CT", "MR"]
    bad = pb.DicomDataset(attributes=[pb.DicomAttribute(keyword="NoSuchKeyword")])
    assert from_proto(bad)[1] == ["identifier.attributes[0]"]


def test_unhealthy_source_backs_off_doubling_and_recovers() -> None:
    now = [1000.0]
    health = HealthTracker(
        failure_threshold=2, base_backoff=10, max_backoff=25, clock=lambda: now[0]
    )
    health.failed("n", "refused")
    assert health.skip_until("n") == 0
    health.failed("n", "refused")
    assert health.skip_until("n") == 1010
    health.failed("n", "refused")
    assert health.skip_until("n") == 1020
    health.failed("n", "refused")
    assert health.skip_until("n") == 1025  # capped
    (snapshot,) = health.snapshot()
    assert (snapshot.healthy, snapshot.consecutive_failures, snapshot.last_error) == (
        False, 4, "refused",
    )  # fmt: skip
    now[0] = 1030
    assert health.skip_until("n") == 0
    health.succeeded("n", 0.02)
    assert health.snapshot()[0].healthy and health.snapshot()[0].consecutive_failures == 0


def test_cache_entries_expire_after_their_ttl() -> None:
    now = [0.0]
    cache = TtlCache(clock=lambda: now[0])
    cache.put("k", "v", ttl=5)
    cache.put("off", "v", ttl=0)
    assert cache.get("k") == "v" and cache.get("off") is None
    now[0] = 5.1
    assert cache.get("k") is None


def test_a_failed_source_becomes_a_dicom_event_without_phi() -> None:
    node = pb.DicomNode(node_id="n1", name="pacs-a", ae_title="ORTHANCA", host="h", port=104)
    status = pb.SourceStatus(
        node_id="n1", outcome=pb.SOURCE_OUTCOME_TIMED_OUT, error="no answer within 3 s",
        latency=seconds_to_duration(3.0), attempts=2,
    )  # fmt: skip
    event = source_event(node, status, slow=False)
    assert event.domain == event_pb2.DOMAIN_DICOM
    assert event.resource.uid == "n1" and event.type == "SourceFailed"
    assert event.fingerprint == "spanner/n1/SourceFailed"
    assert event.severity == event_pb2.SEVERITY_ERROR
    assert event.attributes["outcome"] == "TIMED_OUT"
    slow = source_event(node, status, slow=True)
    assert slow.type == "SourceSlow" and slow.severity == event_pb2.SEVERITY_WARNING


def _as_received(charset: str, name: bytes) -> Dataset:
    """A match as pynetdicom hands it over: raw elements (implicit VR little endian),
    the name's bytes exactly as the source encoded them."""

    def element(tag: int, value: bytes, pad: bytes = b" ") -> bytes:
        value += pad if len(value) % 2 else b""
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    encoded = b"".join(
        (
            element(0x00080005, charset.encode()),
            element(0x00100010, name),
            element(0x00100020, b"PID-1"),
            element(0x0020000D, b"1.2.3", b"\x00"),
        )
    )
    received = decode(BytesIO(encoded), True, True)
    assert received is not None
    return received


@pytest.mark.parametrize(
    ("charset", "raw", "name"),
    [
        ("ISO_IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
        ("ISO_IR 144", "Иванов^Иван".encode("iso8859_5"), "Иванов^Иван"),
        ("ISO_IR 192", "Müller^Jürgen".encode(), "Müller^Jürgen"),
        ("ISO_IR 100", b"Smith^John", "Smith^John"),
        ("", b"Smith^John", "Smith^John"),
        # 7-bit bytes that are not ASCII text: JIS X 0208 behind ISO 2022 escapes.
        ("\\ISO 2022 IR 87", b"\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B", "山田^太郎"),
    ],
)
def test_matches_read_the_same_whatever_their_character_set(
    charset: str, raw: bytes, name: str
) -> None:
    match = decoded(_as_received(charset, raw))
    assert match.SpecificCharacterSet == UTF8
    # What the spanner sends on (before anything read a value) is UTF-8 throughout.
    sent = decode(BytesIO(encode(match, True, True) or b""), True, True)
    assert sent is not None and str(sent.PatientName) == name
    assert sent.SpecificCharacterSet == UTF8
    assert str(match.PatientName) == name
    assert match.PatientID == "PID-1"
