"""The correlation engine: places each event in a group, or leaves it alone.

For each event, :meth:`CorrelationEngine.prepare` picks candidates from the
window's indexes and lists the resource pairs Topology must be asked about;
the caller resolves those (batched, cached) and calls :meth:`apply`, which
scores the candidates with every enabled strategy and then creates, joins or
merges groups. Everything is measured on event time, so replaying the same
events gives the same groups.

``analyse`` cost per event: O(F + R + T·E + C·S), with F and R the bounded
fingerprint and resource lookups (≤ ``MAX_CANDIDATES_PER_KEY`` each), T the
resources of the cluster consulted for Topology (≤ ``TOPOLOGY_RESOURCES``),
E the recent events taken per such resource, C the resulting candidates and S
the strategies; plus O(m) to snapshot a group of m members into its update.
Nothing depends on the number of events in the window.

Changes since the last :meth:`take_changes` are recorded so the consumer can
write them, with the updates and the stream offset, in one transaction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from corrmesh.correlation.config import StrategySettings, duration_us, strategy_settings
from corrmesh.correlation.groups import Edge, GroupState, group_message, group_title
from corrmesh.correlation.plans import Changes, PairRefs, Plan, Restored, pair_key
from corrmesh.correlation.resources import resource_key
from corrmesh.correlation.strategies import (
    Match,
    Relation,
    Strategy,
    StrategyContext,
    create_strategies,
)
from corrmesh.correlation.window import EventInfo, EventWindow
from corrmesh.v1 import correlation_pb2, event_pb2

MAX_CANDIDATES_PER_KEY = 50
TOPOLOGY_RESOURCES = 32
TOPOLOGY_EVENTS_PER_RESOURCE = 4
MAX_EDGES_PER_EVENT = 8


class CorrelationEngine:
    """Owns the window and the groups with members in it."""

    def __init__(
        self,
        config: correlation_pb2.CorrelationConfig,
        strategies: Sequence[Strategy] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.strategies = list(strategies) if strategies is not None else create_strategies()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.matches: Counter[str] = Counter()
        self.late_events = 0
        self.set_config(config)
        self.restore(Restored())

    # -- configuration and state -------------------------------------------------

    def set_config(self, config: correlation_pb2.CorrelationConfig) -> None:
        """Applies ``config`` from the next event on."""
        self.config = config
        self._window_us = duration_us(config.temporal_window)
        self._lateness_us = duration_us(config.allowed_lateness)
        self._enabled: dict[int, list[tuple[Strategy, StrategySettings]]] = {}

    def restore(self, state: Restored) -> None:
        """Replaces all state with ``state``: members inside the window of its watermark."""
        self.window = EventWindow()
        self.groups: dict[str, GroupState] = {}
        self.newest_us = state.newest_us
        self.next_sequence = state.next_sequence
        self.events_in = state.events_in
        self.groups_created = state.groups_created
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
            self.window.add(event)
        self.groups = {k: g for k, g in self.groups.items() if g.in_window}
        self._persisted = set(self.groups)
        self._reset_changes()

    def _reset_changes(self) -> None:
        self._new_groups: set[str] = set()
        self._dirty: set[str] = set()
        self._new_members: dict[str, EventInfo] = {}
        self._new_edges: list[tuple[EventInfo, Edge]] = []
        self._absorbed: dict[str, str] = {}
        self._lone_new: dict[str, EventInfo] = {}
        self._lone_removed: set[str] = set()
        self._retired: dict[str, GroupState] = {}
        self._updates: list[correlation_pb2.GroupUpdate] = []
        self._horizon: int | None = None

    @property
    def watermark_us(self) -> int | None:
        """Newest event time seen less the allowed lateness; older events are late."""
        return None if self.newest_us is None else self.newest_us - self._lateness_us

    @property
    def horizon_us(self) -> int | None:
        """Events older than this can match nothing acceptable any more."""
        watermark = self.watermark_us
        return None if watermark is None else watermark - self._window_us

    def _strategies_for(self, domain: int) -> list[tuple[Strategy, StrategySettings]]:
        enabled = self._enabled.get(domain)
        if enabled is None:
            enabled = [
                (s, settings)
                for s in self.strategies
                if (settings := strategy_settings(self.config, s.name, domain)).enabled
            ]
            self._enabled[domain] = enabled
        return enabled

    # -- per event ---------------------------------------------------------------

    def prepare(self, event: event_pb2.Event) -> Plan:
        """Candidates for ``event`` from the indexes, and the pairs to ask Topology."""
        info = EventInfo.from_event(event)
        if info.event_id in self.window:
            return Plan(info, [], {}, duplicate=True)
        watermark = self.watermark_us
        if watermark is not None and info.occurred_us < watermark:
            return Plan(info, [], {}, late=True)
        strategies = self._strategies_for(info.domain)
        if not self.config.enabled or not strategies:
            return Plan(info, [], {})
        found: dict[str, EventInfo] = {}
        if info.fingerprint:
            for c in self.window.by_fingerprint(info.fingerprint, MAX_CANDIDATES_PER_KEY):
                found.setdefault(c.event_id, c)
        pairs: PairRefs = {}
        if info.resource_key:
            for c in self.window.by_resource(info.resource_key, MAX_CANDIDATES_PER_KEY):
                found.setdefault(c.event_id, c)
            if any(s.uses_topology for s, _ in strategies):
                for key, ref in self.window.recent_resources(
                    info.resource.cluster, info.resource_key, TOPOLOGY_RESOURCES
                ):
                    near = [
                        c
                        for c in self.window.by_resource(key, TOPOLOGY_EVENTS_PER_RESOURCE)
                        if abs(c.occurred_us - info.occurred_us) <= self._window_us
                    ]
                    if near:
                        pairs[pair_key(info.resource_key, key)] = (info.resource, ref)
                        for c in near:
                            found.setdefault(c.event_id, c)
        candidates = [
            c for c in found.values() if abs(c.occurred_us - info.occurred_us) <= self._window_us
        ]
        return Plan(info, candidates, pairs)

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
        self, plan: Plan, relation: Callable[[str, str], Relation | None]
    ) -> list[correlation_pb2.GroupUpdate]:
        """Scores ``plan``'s candidates and places its event; returns the updates made."""
        if plan.duplicate:
            return []
        self.events_in += 1
        if plan.late:
            self.late_events += 1
            return []
        info = plan.event
        updates = self._place(info, self._score(info, plan.candidates, relation))
        self.window.add(info)
        if info.group_id is None:
            self._lone_new[info.event_id] = info
        else:
            self.groups[info.group_id].in_window += 1
        self._advance(info.occurred_us)
        return updates

    def _score(
        self,
        info: EventInfo,
        candidates: list[EventInfo],
        relation: Callable[[str, str], Relation | None],
    ) -> list[tuple[EventInfo, Match]]:
        context = StrategyContext(self._window_us, relation)
        strategies = self._strategies_for(info.domain)
        floor = self.config.min_correlation_score
        scored: list[tuple[EventInfo, Match]] = []
        for candidate in candidates:
            best: Match | None = None
            for strategy, settings in strategies:
                found = strategy.score(info, candidate, context)
                if found is None or found.score < settings.threshold:
                    continue
                weighted = found.score * settings.weight
                if weighted >= floor and (best is None or weighted > best.score):
                    best = Match(weighted, found.strategy, found.reason)
            if best is not None:
                scored.append((candidate, best))
        scored.sort(
            key=lambda cm: (-cm[1].score, abs(cm[0].occurred_us - info.occurred_us), cm[0].sequence)
        )
        return scored

    def _place(
        self, info: EventInfo, matches: list[tuple[EventInfo, Match]]
    ) -> list[correlation_pb2.GroupUpdate]:
        if not matches:
            return []
        max_size = self.config.max_group_size
        best_by_group: dict[str, float] = {}
        loners: list[EventInfo] = []
        for candidate, match in matches:
            if candidate.group_id is None:
                loners.append(candidate)
            else:
                best_by_group.setdefault(candidate.group_id, match.score)
        ranked = sorted(
            best_by_group,
            key=lambda g: (-len(self.groups[g].members), self.groups[g].created_sequence),
        )
        base_id = next((g for g in ranked if len(self.groups[g].members) < max_size), None)
        now = self._clock()
        merged: list[str] = []
        if base_id is None:
            if not loners or max_size < 2:
                return []
            group = self._create(info, loners[: max_size - 1], now)
            kind = correlation_pb2.GROUP_UPDATE_TYPE_CREATED
        else:
            group = self.groups[base_id]
            size = len(group.members) + 1
            if self.config.auto_merge_groups:
                for other_id in ranked:
                    other = self.groups[other_id]
                    if (
                        other_id != base_id
                        and best_by_group[other_id] >= self.config.merge_threshold
                        and size + len(other.members) <= max_size
                    ):
                        merged.append(other_id)
                        size += len(other.members)
                        self._absorb(group, other)
            for loner in loners[: max(0, max_size - size)]:
                self._join(group, loner)
            self._join(group, info)
            kind = (
                correlation_pb2.GROUP_UPDATE_TYPE_MERGED
                if merged
                else correlation_pb2.GROUP_UPDATE_TYPE_MEMBER_ADDED
            )
        chosen = [(c, m) for c, m in matches if c.group_id == group.group_id]
        for candidate, match in chosen[:MAX_EDGES_PER_EVENT]:
            edge = Edge(
                candidate.event_id, info.event_id, match.score, match.strategy, match.reason, now
            )
            group.edges.append(edge)
            self._new_edges.append((info, edge))
            self.matches[match.strategy] += 1
        group.revision += 1
        group.updated_at = now
        self._dirty.add(group.group_id)
        return [self._emit(kind, group, info, merged, now)]

    def _create(self, info: EventInfo, founders: list[EventInfo], now: datetime) -> GroupState:
        members = [*founders, info]
        primary = min(members, key=lambda m: (m.occurred_us, m.sequence))
        group = GroupState(
            group_id=str(uuid.uuid4()),
            created_sequence=self.next_sequence,
            primary_event_id=primary.event_id,
            title=group_title(primary),
            domain=primary.domain,
            created_at=now,
            updated_at=now,
        )
        self.groups[group.group_id] = group
        self._new_groups.add(group.group_id)
        self.groups_created += 1
        for member in members:
            self._join(group, member)
        return group

    def _join(self, group: GroupState, event: EventInfo) -> None:
        if event.event_id in self.window:  # a lone event of the window
            group.in_window += 1
            if self._lone_new.pop(event.event_id, None) is None:
                self._lone_removed.add(event.event_id)
        group.add_member(event)
        self._new_members[event.event_id] = event

    def _absorb(self, base: GroupState, other: GroupState) -> None:
        for member in other.members.values():
            base.add_member(member)
        base.edges.extend(other.edges)
        base.in_window += other.in_window
        del self.groups[other.group_id]
        self._new_groups.discard(other.group_id)
        self._dirty.discard(other.group_id)
        for old, into in self._absorbed.items():
            if into == other.group_id:
                self._absorbed[old] = base.group_id
        if other.group_id in self._persisted:
            self._absorbed[other.group_id] = base.group_id

    def _emit(
        self,
        kind: int,
        group: GroupState,
        info: EventInfo,
        merged: list[str],
        now: datetime,
    ) -> correlation_pb2.GroupUpdate:
        update = correlation_pb2.GroupUpdate(
            sequence=self.next_sequence,
            type=kind,  # type: ignore[arg-type]
            group=group_message(group),
            event_ids=[info.event_id],
            other_group_ids=merged,
        )
        update.emitted_at.FromDatetime(now)
        self.next_sequence += 1
        self._updates.append(update)
        return update

    def _advance(self, occurred_us: int) -> None:
        if self.newest_us is None or occurred_us > self.newest_us:
            self.newest_us = occurred_us
        horizon = self.horizon_us
        if horizon is None:
            return
        self._horizon = horizon
        for event in self.window.evict_before(horizon):
            if event.group_id is None:
                self._lone_new.pop(event.event_id, None)
                continue
            group = self.groups.get(event.group_id)
            if group is None:
                continue
            group.in_window -= 1
            if group.in_window <= 0:
                # No member can match anything any more: the group leaves memory.
                self._retired[group.group_id] = self.groups.pop(group.group_id)

    # -- commit --------------------------------------------------------------------

    def take_changes(self) -> Changes:
        """What to write since the last commit; call :meth:`committed` after writing."""

        def live(group_id: str) -> GroupState | None:
            return self.groups.get(group_id) or self._retired.get(group_id)

        new_groups = [g for g in map(live, self._new_groups) if g is not None]
        changed = [g for g in map(live, self._dirty - self._new_groups) if g is not None]
        return Changes(
            new_groups=new_groups,
            changed_groups=changed,
            new_members=list(self._new_members.values()),
            new_edges=[(str(info.group_id), edge) for info, edge in self._new_edges],
            absorbed=dict(self._absorbed),
            lone_added=list(self._lone_new.values()),
            lone_removed=sorted(self._lone_removed),
            horizon_us=self._horizon,
            updates=list(self._updates),
            newest_us=self.newest_us,
            watermark_us=self.watermark_us,
            events_in=self.events_in,
            groups_created=self.groups_created,
        )

    def committed(self) -> None:
        """The last :meth:`take_changes` is durable: start recording afresh."""
        self._persisted = (self._persisted | self._new_groups) & set(self.groups)
        self._reset_changes()
