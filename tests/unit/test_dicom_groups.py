"""BATCH and PATIENT groups derived from DICOM steps: membership, ids, links, lifecycle."""

from __future__ import annotations

from corrmesh.correlation.config import default_config
from corrmesh.correlation.dicom.keys import BATCH_PREFIX, PATIENT_PREFIX, DicomKeys
from corrmesh.correlation.dicom.state import DicomRestored
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.plans import Restored
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import Feeder
from tests.support.dicom_steps import PATIENT, association, identifiers, instance, step

U = correlation_pb2.GroupUpdateType
BATCH = correlation_pb2.GROUP_TYPE_BATCH
PATIENT_GROUP = correlation_pb2.GROUP_TYPE_PATIENT
R = correlation_pb2.RelationshipType


class Recorder(Feeder):
    """Feeds events and keeps every update and DICOM change the engine hands out."""

    def __init__(self, secret: bytes = b"k" * 32) -> None:
        engine = CorrelationEngine(default_config())
        engine.restore(Restored(dicom=DicomRestored(secret=secret)))
        super().__init__(engine)
        self.updates: list[correlation_pb2.GroupUpdate] = []
        self.members: list[tuple[str, str]] = []
        self.links: list[tuple[str, str, int]] = []

    def feed_all(self, events: list[event_pb2.Event]) -> None:
        for built in events:
            self.sequence += 1
            built.sequence = self.sequence
            self.engine.apply(self.engine.prepare(built), lambda _a, _b: None)
            changes = self.engine.take_changes()
            self.engine.committed()
            self.updates += changes.updates
            self.members += [(g, e.event_id) for g, e in changes.dicom.members]
            self.links += [(p, c, t) for p, c, t, _m in changes.dicom.links]

    def derived(self, kind: int) -> dict[str, correlation_pb2.GroupUpdate]:
        """The newest update of each derived group of ``kind``."""
        return {u.group.group_id: u for u in self.updates if u.group.type == kind}

    def listed(self, group_id: str) -> set[str]:
        return {e for g, e in self.members if g == group_id}


def two_associations_one_exam(recorder: Recorder) -> tuple[str, str, list[event_pb2.Event]]:
    first, second = association("MODALITY1"), association("MODALITY2")
    events = [
        *instance(first, identifiers(number=1), 0),
        *instance(first, identifiers(number=2), 1),
        *instance(second, identifiers(number=3), 20),
    ]
    recorder.feed_all(events)
    return first.association_id, second.association_id, events


def test_two_associations_of_one_exam_share_a_batch_and_a_patient_group() -> None:
    recorder = Recorder()
    first, second, events = two_associations_one_exam(recorder)
    (batch_id, batch), (patient_id, patient) = (
        *recorder.derived(BATCH).items(),
        *recorder.derived(PATIENT_GROUP).items(),
    )
    assert batch_id.startswith(BATCH_PREFIX) and patient_id.startswith(PATIENT_PREFIX)
    every = {e.event_id for e in events}
    assert recorder.listed(batch_id) == every
    assert recorder.listed(patient_id) == every
    assert batch.group.member_count == patient.group.member_count == len(events)
    assert batch.group.title == "CT exam, accession ACC-1"
    assert patient.group.title == f"Patient {patient_id.removeprefix(PATIENT_PREFIX)[:8]}: 1 exam"
    assert batch.group.metadata["correlation_id"] == batch_id
    assert batch.group.metadata["patient_group_id"] == patient_id
    assert batch.group.aggregate_score == 1.0
    # Each event still has one membership group: its association's (built by the strategies).
    memberships = {m.event_id: m.correlation_id for u in recorder.updates for m in u.group.members}
    association_groups = {
        u.group.group_id
        for u in recorder.updates
        if u.group.type == correlation_pb2.GROUP_TYPE_ASSOCIATION
    }
    assert len(association_groups) == 2
    assert set(memberships.values()) == {first, second}
    assert set(recorder.links) == {
        (patient_id, batch_id, R.RELATIONSHIP_TYPE_BATCH),
        (batch_id, first, R.RELATIONSHIP_TYPE_RELATED),
        (batch_id, second, R.RELATIONSHIP_TYPE_RELATED),
    }
    links = {(link.group_id, link.relationship_type) for link in batch.group.links}
    assert links == {(patient_id, R.RELATIONSHIP_TYPE_BATCH)}


def test_no_patient_id_in_any_update() -> None:
    recorder = Recorder()
    two_associations_one_exam(recorder)
    for update in recorder.updates:
        if update.group.type in (BATCH, PATIENT_GROUP):
            assert PATIENT not in str(update.group.metadata)
            assert PATIENT not in update.group.title
            assert PATIENT not in update.group.group_id
    assert all(PATIENT not in parent + child for parent, child, _t in recorder.links)


def test_a_later_exam_of_the_patient_is_linked_to_the_previous_one_as_prior() -> None:
    recorder = Recorder()
    two_associations_one_exam(recorder)
    (first_batch,) = recorder.derived(BATCH)
    later = association("MODALITY1")
    recorder.feed_all(instance(later, identifiers(accession="ACC-2", study="1.2.9.2"), 40))
    recorder.feed_all(instance(later, identifiers(accession="ACC-3", study="1.2.9.3"), 41))
    batches = recorder.derived(BATCH)
    assert len(batches) == 3
    second_batch, third_batch = (b for b in batches if b != first_batch)
    (patient_id,) = recorder.derived(PATIENT_GROUP)
    priors = [(p, c) for p, c, t in recorder.links if t == R.RELATIONSHIP_TYPE_PRIOR]
    # A chain, in the order the exams arrived.
    assert priors == [(first_batch, second_batch), (second_batch, third_batch)]
    patient = recorder.derived(PATIENT_GROUP)[patient_id].group
    assert patient.title.endswith(": 3 exams")
    assert {link.group_id for link in patient.links} == set(batches)
    assert patient.metadata["latest_batch_id"] == third_batch
    second = recorder.engine.find_group(second_batch)
    assert second is not None
    assert set(second.links) == {
        (patient_id, R.RELATIONSHIP_TYPE_BATCH),
        (first_batch, R.RELATIONSHIP_TYPE_PRIOR),
        (third_batch, R.RELATIONSHIP_TYPE_PRIOR),
    }


def test_one_association_with_two_patients_feeds_two_batches() -> None:
    recorder = Recorder()
    shared = association("PACS_OLD")
    recorder.feed_all(
        [
            *instance(shared, identifiers(patient="P-1", accession="A-1"), 0),
            *instance(shared, identifiers(patient="P-2", accession="A-2", study="1.2.5"), 1),
        ]
    )
    batches = recorder.derived(BATCH)
    assert len(batches) == 2 and len(recorder.derived(PATIENT_GROUP)) == 2
    assert all(len(recorder.listed(b)) == 2 for b in batches)
    related = {(p, c) for p, c, t in recorder.links if t == R.RELATIONSHIP_TYPE_RELATED}
    assert related == {(b, shared.association_id) for b in batches}


def test_without_accession_the_study_is_the_exam() -> None:
    recorder = Recorder()
    sender = association()
    recorder.feed_all(
        [
            *instance(sender, identifiers(accession="", study="1.2.7", number=1), 0),
            *instance(sender, identifiers(accession="", study="1.2.7", number=2), 1),
            *instance(sender, identifiers(accession="", study="1.2.8", number=3), 2),
        ]
    )
    batches = recorder.derived(BATCH)
    assert sorted(u.group.title for u in batches.values()) == [
        "CT exam, study 1.2.7",
        "CT exam, study 1.2.8",
    ]


def test_ids_are_keyed_so_another_key_gives_other_ids() -> None:
    one, same, other = DicomKeys(b"a" * 32), DicomKeys(b"a" * 32), DicomKeys(b"b" * 32)
    assert one.ids(PATIENT, "accession:A") == same.ids(PATIENT, "accession:A")
    assert one.ids(PATIENT, "accession:A")[0] != other.ids(PATIENT, "accession:A")[0]
    assert one.ids(PATIENT, "accession:A")[1] != other.ids(PATIENT, "accession:A")[1]
    assert one.ids("", "accession:A")[1] == "" and one.ids(PATIENT, "")[0] == ""


def test_a_resolved_batch_reopens_when_the_exam_sends_again() -> None:
    recorder = Recorder()
    two_associations_one_exam(recorder)
    (batch_id,) = recorder.derived(BATCH)
    engine = recorder.engine
    group = engine.find_group(batch_id)
    assert group is not None
    engine.resolve(group, "checked")
    engine.take_changes()
    engine.committed()
    assert group.status == correlation_pb2.GROUP_STATUS_RESOLVED
    recorder.updates.clear()
    late = association("MODALITY1")
    recorder.feed_all([step(late, identifiers(number=9), event_pb2.PROCESSING_STAGE_RECEIVED, 30)])
    kinds = [u.type for u in recorder.updates if u.group.group_id == batch_id]
    assert kinds == [U.GROUP_UPDATE_TYPE_MEMBER_ADDED, U.GROUP_UPDATE_TYPE_STATUS_CHANGED]
    assert group.status == correlation_pb2.GROUP_STATUS_ACTIVE
    assert group.member_count == 7
    # Not a new group: no CREATED, no second batch.
    assert len(recorder.derived(BATCH)) == 1


def test_derived_groups_go_stable_then_archived_on_event_time() -> None:
    recorder = Recorder()
    two_associations_one_exam(recorder)
    (batch_id,) = recorder.derived(BATCH)
    engine = recorder.engine
    # Stable an hour after the last step, archived a week after that (defaults).
    engine.advance(engine.newest_us + 3700 * 1_000_000)  # type: ignore[operator]
    group = engine.find_group(batch_id)
    assert group is not None and group.status == correlation_pb2.GROUP_STATUS_STABLE
    engine.advance(engine.newest_us + 8 * 86_400 * 1_000_000)  # type: ignore[operator]
    assert engine.find_group(batch_id) is None
    archived = engine.take_changes().changed_groups
    assert {g.group_id: g.status for g in archived}[batch_id] == (
        correlation_pb2.GROUP_STATUS_ARCHIVED
    )
