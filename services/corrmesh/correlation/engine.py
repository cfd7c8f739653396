"""The correlation engine: places each event in a group, or leaves it alone.

For each event, :meth:`CorrelationEngine.prepare` looks up candidates in the
window's indexes (only those of the strategies enabled for the event's
domain) and lists the resource pairs Topology must be asked about; the caller
resolves those (batched, cached) and calls :meth:`apply`, which scores each
candidate with the strategies whose indexes found it, then creates, joins,
merges or continues a group and moves group lifecycles on. Everything is
measured on event time, so replaying the same events gives the same groups.

``analyse`` (prepare + apply) costs O(K + T·E + C·S + u) per event: K the
index lookups, each bounded (``LIMITS``); T ≤ ``TOPOLOGY_RESOURCES`` resources
of the cluster with E ≤ ``neighbours.EVENTS_PER_RESOURCE`` events each; C ≤ the
sum of those bounds the candidates; S the enabled strategies (plus, for an
event on a resource nothing links to the others, one scan of
``coincidence.SCANNED_EVENTS`` recent events); u the members
and edges the emitted update carries (all of them only when groups are
created or merged). Nothing depends on the number of events in the window or
of groups in memory; lifecycle transitions cost O(log G) each when due.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from corrmesh.correlation.camera_passes import CameraPassesMixin
from corrmesh.correlation.camera_travel import TravelTimes
from corrmesh.correlation.changes import ChangeLog
from corrmesh.correlation.coincidence import coincident_match
from corrmesh.correlation.conditions import OpenConditionsMixin
from corrmesh.correlation.config import (
    StrategySettings,
    duration_us,
    strategy_settings,
)
from corrmesh.correlation.dicom.rollups import DicomGroupsMixin
from corrmesh.correlation.groups import GroupState
from corrmesh.correlation.lifecycle import LifecycleMixin
from corrmesh.correlation.manual import ManualEditsMixin
from corrmesh.correlation.neighbours import related_candidates
from corrmesh.correlation.placement import PlacementMixin
from corrmesh.correlation.plans import Candidate, Changes, PairRefs, Plan, Restored, pair_key
from corrmesh.correlation.resources import resource_key
from corrmesh.correlation.strategies import (
    CAMERA,
    CORRELATION,
    FINGERPRINT,
    RESOURCE,
    SOURCE,
    TOKENS,
    TOPOLOGY,
    Match,
    Relation,
    Strategy,
    StrategyContext,
    create_strategies,
)
from corrmesh.correlation.window import EventInfo, EventWindow, indexed_tokens
from corrmesh.v1 import correlation_pb2, event_pb2

#: Newest entries read per key of each index.
LIMITS = {FINGERPRINT: 50, RESOURCE: 50, SOURCE: 20, TOKENS: 8, CAMERA: 64, CORRELATION: 50}
TOPOLOGY_RESOURCES = 32
_BIT = {name: 1 << i for i, name in enumerate(sorted([*LIMITS, TOPOLOGY]))}
Enabled = list[tuple[Strategy, StrategySettings, int]]


def _wall_us() -> int:
    return time.time_ns() // 1000


class CorrelationEngine(
    PlacementMixin,
    CameraPassesMixin,
    OpenConditionsMixin,
    DicomGroupsMixin,
    LifecycleMixin,
    ManualEditsMixin,
):
    """Owns the window, the groups with members in it and the headers of quieter ones."""

    def __init__(
        self,
        config: correlation_pb2.CorrelationConfig,
        strategies: Sequence[Strategy] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.strategies = list(strategies) if strategies is not None else create_strategies()
        #: Wall clock in microseconds: when groups and edges were made (not event time).
        self._clock = clock or _wall_us
        self.matches: Counter[str] = Counter()
        self.camera_travel = TravelTimes()
        self.set_config(config)
        self.restore(Restored())

    # -- configuration and state -------------------------------------------------

    def set_config(self, config: correlation_pb2.CorrelationConfig) -> None:
        """Applies ``config`` from the next event on."""
        self.config = config
        self._window_us = duration_us(config.temporal_window)
        self._lateness_us = duration_us(config.allowed_lateness)
        self.configure_placement(config)
        self.configure_cameras(config)
        self._context = StrategyContext(
            window_us=self._window_us,
            pattern_threshold=config.pattern_similarity_threshold,
            camera_window_us=duration_us(config.multi_camera.window),
            camera_same_controller=config.multi_camera.require_same_controller,
            camera_class=self.camera_class,
            camera_travel=None if config.multi_camera.fixed_window else self.camera_travel,
            camera_track=self.camera_track,
        )
        self._enabled: dict[int, Enabled] = {}
        self.configure_lifecycle(config)
        self.configure_dicom(config)

    def restore(self, state: Restored) -> None:
        """Replaces all state with ``state``: members inside the window of its watermark."""
        self.window = EventWindow()
        self.groups: dict[str, GroupState] = {}
        self.newest_us = state.newest_us
        self.next_sequence = state.next_sequence
        self.events_in = state.events_in
        self.groups_created = state.groups_created
        self.late_events = state.late_events
        self._arrival_wall_us: int | None = None
        self.reset_lifecycle()
        horizon = self.horizon_us
        inside: list[EventInfo] = []
        for group in state.groups:
            self.groups[group.group_id] = group
            group.in_window = 0
            for member in group.members.values():
                if horizon is None or member.occurred_us >= horizon:
                    inside.append(member)
                    group.in_window += 1
        inside.extend(e for e in state.loners if horizon is None or e.occurred_us >= horizon)
        # Arrival order is sequence order: the indexes come back exactly as they were.
        for event in sorted(inside, key=lambda e: e.sequence):
            event.camera_key = self.camera_key(event)
            self.window.add(event)
        self.log = ChangeLog()
        self.rebuild_conditions(
            (m for g in self.groups.values() for m in g.members.values()),
            self._lateness_us,
            self.watermark_us,
        )
        for group in list(self.groups.values()):
            if not group.in_window and not self.holds_condition(group.group_id):
                self.settle(group)
        for header in state.headers:
            self.track(header)
        for group in self.groups.values():
            self.track(group)
        self._persisted = set(self.groups) | set(self.headers)
        self.reset_dicom(state.dicom)
        self.relearn_travel(state.camera_steps)

    @property
    def watermark_us(self) -> int | None:
        """Newest event time seen less the allowed lateness; older events are late."""
        return None if self.newest_us is None else self.newest_us - self._lateness_us

    @property
    def horizon_us(self) -> int | None:
        """Events older than this can match nothing acceptable any more."""
        watermark = self.watermark_us
        return None if watermark is None else watermark - self._window_us

    def _strategies_for(self, info: EventInfo) -> Enabled:
        enabled = self._enabled.get(info.domain)
        if enabled is None:
            enabled = []
            for strategy in self.strategies:
                settings = strategy_settings(self.config, strategy.name, info.domain)
                if settings.enabled:
                    bits = sum(_BIT[i] for i in strategy.indexes)
                    enabled.append((strategy, settings, bits))
            self._enabled[info.domain] = enabled
        return [e for e in enabled if e[0].applies_to(info)]

    # -- per event ---------------------------------------------------------------

    def prepare(self, event: event_pb2.Event) -> Plan:
        """Candidates for ``event`` from the indexes, and the pairs to ask Topology."""
        info = EventInfo.from_event(event)
        if info.event_id in self.window.events:
            return Plan(info, [], duplicate=True)
        watermark = self.watermark_us
        if watermark is not None and info.occurred_us < watermark:
            return Plan(info, [], late=True)
        info.camera_key = self.camera_key(info)
        strategies = self._strategies_for(info)
        if not self.config.enabled or not strategies:
            return Plan(info, [])
        wanted = 0
        for _, _, bits in strategies:
            wanted |= bits
        window = self.window
        found: dict[str, Candidate] = {}

        def take(events: Iterable[EventInfo], bit: int) -> None:
            for c in events:
                entry = found.get(c.event_id)
                if entry is None:
                    found[c.event_id] = Candidate(c, bit)
                else:
                    entry.found_by |= bit

        if wanted & _BIT[FINGERPRINT] and info.fingerprint:
            take(
                window.lookup(window.fingerprints, info.fingerprint, LIMITS[FINGERPRINT]),
                _BIT[FINGERPRINT],
            )
        if wanted & _BIT[RESOURCE] and info.resource_key:
            take(
                window.lookup(window.resources, info.resource_key, LIMITS[RESOURCE]), _BIT[RESOURCE]
            )
        if wanted & _BIT[SOURCE] and info.source:
            take(window.lookup(window.sources, info.source, LIMITS[SOURCE]), _BIT[SOURCE])
        if wanted & _BIT[TOKENS]:
            for token in indexed_tokens(info):
                take(window.lookup(window.tokens, token, LIMITS[TOKENS]), _BIT[TOKENS])
        if wanted & _BIT[CAMERA] and info.camera_key:
            take(window.lookup(window.cameras, info.camera_key, LIMITS[CAMERA]), _BIT[CAMERA])
        if wanted & _BIT[CORRELATION] and info.correlation_id:
            found_same = window.lookup(
                window.correlations, info.correlation_id, LIMITS[CORRELATION]
            )
            take(found_same, _BIT[CORRELATION])
        neighbours = []
        if wanted & _BIT[TOPOLOGY] and info.resource_key:
            # Their events become candidates in apply(), once Topology has said
            # which of these resources are related at all.
            neighbours = window.recent_resources(
                info.resource.cluster, info.resource_key, TOPOLOGY_RESOURCES
            )
        window_us = self._window_us
        candidates = [
            c for c in found.values() if abs(c.event.occurred_us - info.occurred_us) <= window_us
        ]
        return Plan(info, candidates, neighbours, dicom=self.dicom_step(event))

    def predict_pairs(self, events: Iterable[event_pb2.Event], limit: int) -> PairRefs:
        """Pairs the coming ``events`` will probably need: prefetched in one call."""
        pairs: PairRefs = {}
        seen: dict[str, dict[str, event_pb2.ResourceRef]] = {}
        for event in events:
            key = resource_key(event.resource)
            if not key:
                continue
            cluster = event.resource.cluster
            batch = seen.setdefault(cluster, {})
            others = self.window.recent_resources(cluster, key, TOPOLOGY_RESOURCES)
            others += [(k, r) for k, r in reversed(batch.items()) if k != key][:TOPOLOGY_RESOURCES]
            for other_key, ref in others:
                pairs.setdefault(pair_key(key, other_key), (event.resource, ref))
                if len(pairs) >= limit:
                    return pairs
            batch.pop(key, None)
            batch[key] = event.resource
        return pairs

    def apply(
        self,
        plan: Plan,
        relation: Callable[[str, str], Relation | None],
        trace: Callable[[], event_pb2.TraceContext] | None = None,
    ) -> list[correlation_pb2.GroupUpdate]:
        """Scores ``plan``'s candidates and places its event.

        Returns the updates emitted so far (MEMBER_ADDED ones come out folded
        at :meth:`take_changes`); ``trace`` gives the trace context they carry.
        """
        self.trace = trace
        if plan.duplicate:
            return []
        self.events_in += 1
        if plan.late:
            self.late_events += 1
            return []
        start = len(self.log.updates)
        info = plan.event
        self._context.relation = relation
        candidates, isolated = plan.candidates, False
        if plan.neighbours:
            candidates, isolated = related_candidates(
                plan, relation, self.window, self._window_us, _BIT[TOPOLOGY]
            )
        matches = self._score(info, candidates)
        matches, pass_head = self.choose_pass(info, matches)
        if isolated:
            found = coincident_match(info, self.window, self.groups)
            if found is not None and all(c.group_id != found[0].group_id for c, _ in matches):
                matches.append(found)
        matches = self.follow_condition(info, matches)
        loners = [candidate for candidate, _ in matches if candidate.group_id is None]
        self._place(info, matches)
        self.learn_step(info, pass_head)
        self.window.add(info)
        if info.group_id is None:
            self.log.lone_new[info.event_id] = info
        else:
            self.groups[info.group_id].in_window += 1
        for event in (*loners, info):  # lone events it brought into a group too
            self.observe_condition(event)
        if plan.dicom is not None:
            self.observe_dicom(info, plan.dicom)
        self._arrival_wall_us = time.time_ns() // 1000
        self.advance(info.occurred_us)
        return self.log.updates[start:]

    def tick(self, wall_us: int) -> list[correlation_pb2.GroupUpdate]:
        """On a quiet stream, moves event time on with the wall clock since the last event."""
        if self.newest_us is None:
            return []
        if self._arrival_wall_us is None:
            self._arrival_wall_us = wall_us
            return []
        projected = self.newest_us + (wall_us - self._arrival_wall_us)
        self._arrival_wall_us = wall_us
        if projected <= self.newest_us:
            return []
        start = len(self.log.updates)
        self.advance(projected)
        return self.log.updates[start:]

    def _score(self, info: EventInfo, candidates: list[Candidate]) -> list[tuple[EventInfo, Match]]:
        context = self._context
        strategies = self._strategies_for(info)
        floor = self.config.min_correlation_score
        scored: list[tuple[EventInfo, Match]] = []
        for candidate in candidates:
            best: Match | None = None
            other = candidate.event
            for strategy, settings, bits in strategies:
                if not bits & candidate.found_by:
                    continue
                found = strategy.score(info, other, context)
                if found is None or found.score < settings.threshold:
                    continue
                weighted = found.score * settings.weight
                if weighted >= floor and (best is None or weighted > best.score):
                    best = Match(weighted, found.strategy, found.reason)
            if best is not None:
                scored.append((other, best))
        scored.sort(
            key=lambda cm: (-cm[1].score, abs(cm[0].occurred_us - info.occurred_us), cm[0].sequence)
        )
        return scored

    # -- commit --------------------------------------------------------------------

    def take_changes(self) -> Changes:
        """What to write since the last commit; call :meth:`committed` after writing."""
        self.flush_updates()
        log = self.log

        def live(group_id: str) -> GroupState | None:
            found = self.groups.get(group_id) or self.headers.get(group_id)
            return found or log.retired.get(group_id)

        def full(group_id: str) -> GroupState | None:
            return log.retired.get(group_id) or self.groups.get(group_id)

        new_groups = [g for g in map(live, log.new_groups) if g is not None]
        changed = [g for g in map(live, log.dirty - log.new_groups) if g is not None]
        rewritten = [g for g in map(full, log.rewritten) if g is not None]
        return Changes(
            new_groups=new_groups,
            changed_groups=changed,
            new_members=list(log.new_members.values()),
            new_edges=[(str(info.group_id), edge) for info, edge in log.new_edges],
            absorbed=dict(log.absorbed),
            rewritten=rewritten,
            new_links=list(log.new_links),
            lone_added=list(log.lone_new.values()),
            lone_removed=sorted(log.lone_removed),
            horizon_us=log.horizon,
            updates=list(log.updates),
            newest_us=self.newest_us,
            watermark_us=self.watermark_us,
            events_in=self.events_in,
            groups_created=self.groups_created,
            late_events=self.late_events,
            dicom=self.take_dicom_changes(),
        )

    def committed(self) -> None:
        """The last :meth:`take_changes` is durable: start recording afresh."""
        self._persisted = (self._persisted | self.log.new_groups) & (
            set(self.groups) | set(self.headers)
        )
        self.log = ChangeLog()
