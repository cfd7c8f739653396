"""BATCH and PATIENT groups over DICOM processing steps, and the alerts raised on groups.

**Membership.** Every event still has exactly one *membership group*: the one
the strategies put it in (for DICOM, normally its association's group,
GROUP_TYPE_ASSOCIATION); ``GetGroupForEvent`` returns that one, and
``CorrelateEvents``, ``MergeGroups`` and ``SplitGroup`` move only that
membership. BATCH and PATIENT groups are *derived* on purpose: a DICOM step
with an exam (accession number, else study instance UID) is also listed in
its batch's group, and one with a patient id in its patient's group. Those
listings are copies, kept in their own table, decided by identifiers alone
(never by a score), and never moved by hand: derived groups cannot be merged,
split or given events (INVALID_ARGUMENT); they can be resolved.

**Ids and links.** A derived group's id is its correlation id
(:mod:`.keys`: a keyed hash, no patient id in it). With ``LinkCorrelations``
semantics (rows in the same table, so ``ListRelated`` walks them):

* patient → batch: BATCH, when the batch first appears;
* batch → association (the step's ``correlation_id``): RELATED, once per pair;
* previous batch of the patient → the new batch: PRIOR. "Previous" is the
  patient's batch that appeared last before it (arrival order on event time:
  study dates are not read), so PRIOR links form a chain, and
  ``ListRelated(relationship_types=[PRIOR], transitive=true)`` lists every
  earlier exam, nearest first.

The same patient-batch and batch-batch links appear in ``Group.links``.

**Lifecycle.** Derived groups move like the others (BUILDING, ACTIVE, STABLE
after ``stabilize_after``, ARCHIVED after ``archive_after``), but a new step
for a RESOLVED or ARCHIVED one reopens it rather than starting a recurrence:
the exam or the patient is the same. Only their headers are in memory; an
archived one is read back before the batch that needs it (the consumer calls
:meth:`DicomGroupsMixin.groups_to_load`), so a patient keeps one group for
good. Their aggregate score is 1.0: membership is by identity.

**Alerts** (:mod:`.alerts`) go out as GROUP_UPDATE_TYPE_ALERT updates with
the text in ``alert``; the group's ``metadata["last_alert"]`` keeps the last
one. A stuck association alerts on the group of its newest step (when it has
one and it was not merged away since), a stuck batch on the batch group;
error-rate alerts on the membership and batch groups of the failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from corrmesh.correlation.config import duration_us
from corrmesh.correlation.dicom.alerts import ErrorRates, StuckWatch
from corrmesh.correlation.dicom.keys import DicomKeys, DicomStep, short_id
from corrmesh.correlation.dicom.state import RATE, STUCK, DicomChanges, DicomRestored
from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.lifecycle import LifecycleMixin
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2, event_pb2
from corrmesh.v1.correlation_pb2 import (
    GROUP_STATUS_ARCHIVED,
    GROUP_STATUS_BUILDING,
    GROUP_STATUS_RESOLVED,
    GROUP_STATUS_STABLE,
    GROUP_TYPE_BATCH,
    GROUP_TYPE_PATIENT,
    GROUP_UPDATE_TYPE_ALERT,
    GROUP_UPDATE_TYPE_CREATED,
    GROUP_UPDATE_TYPE_MEMBER_ADDED,
    RELATIONSHIP_TYPE_BATCH,
    RELATIONSHIP_TYPE_PRIOR,
    RELATIONSHIP_TYPE_RELATED,
)

#: (batch, association) pairs remembered as linked; older ones may be linked
#: again, which the store ignores.
MAX_LINKED_PAIRS = 50_000
_REOPENS = frozenset({GROUP_STATUS_RESOLVED, GROUP_STATUS_ARCHIVED})
_ANSWERED = frozenset({event_pb2.PROCESSING_OUTCOME_SUCCEEDED, event_pb2.PROCESSING_OUTCOME_FAILED})


class DicomGroupsMixin(LifecycleMixin):
    """The DICOM part of :class:`~corrmesh.correlation.engine.CorrelationEngine`."""

    groups_created: int
    _clock: Callable[[], int]
    #: False until :meth:`reset_dicom` has run (set_config comes first).
    _dicom_ready = False

    # -- configuration and state --------------------------------------------------------

    def configure_dicom(self, config: correlation_pb2.CorrelationConfig) -> None:
        """Applies ``config.dicom_alerts`` from the next event on."""
        self._dicom_alerts = config.dicom_alerts
        if self._dicom_ready:
            self._configure_trackers()

    def _configure_trackers(self) -> None:
        alerts = self._dicom_alerts
        self.stuck.configure(duration_us(alerts.stuck_after), alerts.complete_at)
        self.rates.configure(
            alerts.error_rate_threshold, alerts.error_min_count, duration_us(alerts.error_window)
        )

    def reset_dicom(self, restored: DicomRestored) -> None:
        """Replaces the DICOM state with ``restored`` (engine restore)."""
        self.dicom_keys = DicomKeys(restored.secret)
        self.stuck = StuckWatch()
        self.rates = ErrorRates()
        self._dicom_ready = True
        self._configure_trackers()
        for kind, key, payload in restored.state:
            if kind == STUCK:
                self.stuck.load(key, payload)
            elif kind == RATE:
                self.rates.load(key, payload)
        self._configure_trackers()  # again: queues the deadlines of what was loaded
        self._dicom_log = DicomChanges()
        self._linked: dict[tuple[str, str], None] = {}

    def dicom_step(self, event: event_pb2.Event) -> DicomStep | None:
        """The processing step ``event`` records (None for any other event)."""
        if event.domain != event_pb2.DOMAIN_DICOM:
            return None
        return self.dicom_keys.step(event)

    def groups_to_load(self, events: Iterable[event_pb2.Event]) -> list[str]:
        """Derived groups ``events`` will touch that are not in memory (maybe archived)."""
        wanted: dict[str, None] = {}
        for event in events:
            step = self.dicom_step(event)
            if step is None:
                continue
            for group_id in (step.batch_id, step.patient_id):
                if group_id and group_id not in self.groups and group_id not in self.headers:
                    wanted[group_id] = None
        return list(wanted)

    def adopt_headers(self, headers: Iterable[GroupState]) -> None:
        """Headers read back by :meth:`groups_to_load`'s ids."""
        for header in headers:
            if header.group_id not in self.groups and header.group_id not in self.headers:
                self.headers[header.group_id] = header
                self.track(header)

    def take_dicom_changes(self) -> DicomChanges:
        """What to write since the last commit (memberships, links, alert state)."""
        changes, self._dicom_log = self._dicom_log, DicomChanges()
        for kind, tracker in ((STUCK, self.stuck), (RATE, self.rates)):
            changes.state_put.extend((kind, key, tracker.dump(key)) for key in tracker.dirty)
            changes.state_delete.extend((kind, key) for key in tracker.removed)
            tracker.dirty.clear()
            tracker.removed.clear()
        return changes

    # -- per event ------------------------------------------------------------------------

    def observe_dicom(self, info: EventInfo, step: DicomStep) -> None:
        """After ``info`` was placed: its batch and patient groups, links and alerts."""
        now = self._clock()
        patient = self._derived(step.patient_id, GROUP_TYPE_PATIENT, info, step, now)
        batch = self._derived(step.batch_id, GROUP_TYPE_BATCH, info, step, now)
        if batch is not None and batch[1] and patient is not None:
            self._link_new_batch(patient[0], batch[0])
        if batch is not None and info.correlation_id:
            self._link_association(batch[0].group_id, info.correlation_id, step)
        for found in (patient, batch):
            if found is None:
                continue
            group, created = found
            self._dicom_log.members.append((group.group_id, info))
            if created:
                # The CREATED update below takes this sequence: ListGroups' order.
                group.created_sequence = self.next_sequence
            kind = GROUP_UPDATE_TYPE_CREATED if created else GROUP_UPDATE_TYPE_MEMBER_ADDED
            self.changed(
                group, kind, [info.event_id], now, ([info], []), cause=info, created=created
            )
        self._watch(info, step, batch[0].group_id if batch is not None else "", now)

    def _derived(
        self, group_id: str, kind: int, info: EventInfo, step: DicomStep, now: int
    ) -> tuple[GroupState, bool] | None:
        """The derived group ``group_id`` with ``info`` counted in, and whether it is new."""
        if not group_id:
            return None
        group = self.find_group(group_id)
        created = group is None
        if group is None:
            group = GroupState(
                group_id=group_id,
                created_sequence=self.next_sequence,
                primary_event_id=info.event_id,
                title="",
                domain=info.domain,
                created_us=now,
                updated_us=now,
                status=GROUP_STATUS_BUILDING,
                type=kind,
                metadata={"correlation_id": group_id},
                loaded=False,
            )
            group.edge_score_sum, group.edge_count = 1.0, 1
            if kind == GROUP_TYPE_BATCH:
                what = step.modality or "DICOM"
                group.title = f"{what} exam, {step.exam}"
                group.metadata["exam"] = step.exam
                if step.patient_id:
                    group.metadata["patient_group_id"] = step.patient_id
            else:
                group.metadata["exams"] = "0"
                group.title = _patient_title(group)
            self.headers[group_id] = group
            self.log.new_groups.add(group_id)
            self.groups_created += 1
        elif group.status in _REOPENS:
            # The same exam or patient again: wake it (changed() makes a STABLE group ACTIVE).
            group.status = GROUP_STATUS_STABLE
            group.resolved_us = None
        group.count_member(info)
        return group, created

    def _link_new_batch(self, patient: GroupState, batch: GroupState) -> None:
        """patient → batch (BATCH), and the patient's previous batch → this one (PRIOR)."""
        log = self._dicom_log.links
        self.link(patient.group_id, batch, RELATIONSHIP_TYPE_BATCH)
        log.append((patient.group_id, batch.group_id, RELATIONSHIP_TYPE_BATCH, {}))
        previous = patient.metadata.get("latest_batch_id", "")
        if previous and previous != batch.group_id:
            in_memory = self.find_group(previous) is not None
            self.link(previous, batch, RELATIONSHIP_TYPE_PRIOR)
            if not in_memory:
                # link() writes the parent's side only for a parent in memory.
                self.log.new_links.append((previous, batch.group_id, RELATIONSHIP_TYPE_PRIOR))
            log.append((previous, batch.group_id, RELATIONSHIP_TYPE_PRIOR, {}))
        patient.metadata["latest_batch_id"] = batch.group_id
        patient.metadata["exams"] = str(int(patient.metadata.get("exams", "0")) + 1)
        patient.title = _patient_title(patient)

    def _link_association(self, batch_id: str, association: str, step: DicomStep) -> None:
        pair = (batch_id, association)
        if pair in self._linked:
            return
        if len(self._linked) >= MAX_LINKED_PAIRS:
            del self._linked[next(iter(self._linked))]
        self._linked[pair] = None
        self._dicom_log.links.append(
            (
                batch_id,
                association,
                RELATIONSHIP_TYPE_RELATED,
                {"calling_ae_title": step.calling_ae},
            )
        )

    # -- alerts -----------------------------------------------------------------------------

    def _watch(self, info: EventInfo, step: DicomStep, batch_id: str, now: int) -> None:
        at = info.occurred_us
        membership = info.group_id or ""
        if info.correlation_id:
            label = f"association {info.correlation_id[:8]} from {step.calling_ae}"
            self.stuck.record(info.correlation_id, label, membership, step.stage, step.outcome, at)
        if batch_id:
            self.stuck.record(batch_id, f"exam {step.exam}", batch_id, step.stage, step.outcome, at)
        if step.outcome not in _ANSWERED or not step.stage:
            return
        newest = max(self.newest_us or at, at)
        targets = [g for g in (membership, batch_id) if g]
        alert = self.rates.record(step.calling_ae, step.stage, step.failed, at, newest, targets)
        if alert is not None:
            for group_id in alert.group_ids:
                self._alert(group_id, alert.text, [info.event_id], now)

    def advance(self, event_us: int) -> None:
        """The lifecycle's clock, then the stuck correlations it reveals."""
        super().advance(event_us)
        watermark = self.watermark_us
        if watermark is None or not self._dicom_ready:
            return
        due = self.stuck.due(watermark)
        if due:
            now = self._clock()
            for alert in due:
                self._alert(alert.group_id, alert.text, [], now)

    def _alert(self, group_id: str, text: str, event_ids: list[str], now: int) -> None:
        """One ALERT update on ``group_id`` (skipped for a group gone from memory)."""
        group = self.find_group(group_id)
        if group is None:
            return
        group.metadata["last_alert"] = text
        group.revision += 1
        group.updated_us = now
        self.log.dirty.add(group_id)
        self.emit(GROUP_UPDATE_TYPE_ALERT, group, event_ids, now, [], [], [])
        # emit() appends this update last (after any folded MEMBER_ADDED it flushes).
        self.log.updates[-1].alert = text


def _patient_title(group: GroupState) -> str:
    exams = int(group.metadata.get("exams", "0"))
    return f"Patient {short_id(group.group_id)}: {exams} exam{'' if exams == 1 else 's'}"
