"""Runs the analysis beside the engine, off the event path.

After each commit the gate tells the analyst which groups gained or lost
members (:meth:`Analyst.note`). A moment later (``period``) the analyst takes
a snapshot of those groups, asks Topology where their failures travel (cached,
see :mod:`.reach`), ranks root causes, matches patterns, asks Topology for the
blast radius of the root cause, and stores the result on each group through
the engine gate, which commits it and emits one GROUP_UPDATE_TYPE_ANALYZED
update per group. A busy group is analysed at most once per period, and a
storm of events costs one analysis, not one per event.

A confident pattern knows its root better than the generic ranking: when a
pattern matches, its root resource leads the candidates.

The history behind the recurring-failure pattern (which failure showed on
which workload when, the newest HISTORY_PER_SIGNATURE groups of each) lives in
memory: after a restart, recurrences count from the groups analysed since. A
group that adds an occurrence to it sends the groups that showed the same
failure later back for analysis, so a pattern depends on event time, not on the
order in which a backlog happened to be analysed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from corrmesh.correlation.analysis.actions import BUILT_IN_RULES, ActionRule
from corrmesh.correlation.analysis.facts import GroupFacts, node_id
from corrmesh.correlation.analysis.patterns import Found, PatternContext, best_match
from corrmesh.correlation.analysis.patterns.recurring import occurrences, regularity, signatures
from corrmesh.correlation.analysis.reach import TopologyReach
from corrmesh.correlation.analysis.report import analysis_message
from corrmesh.correlation.analysis.root_cause import Candidate, RootCauseKnobs, rank_root_causes
from corrmesh.correlation.dicom.keys import ROLLUP_TYPES
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2

log = logging.getLogger(__name__)

PERIOD_SECONDS = 0.5
#: Groups analysed per pass; the rest wait for the next one.
BATCH = 64
#: Failing resources of one group whose topology is looked up.
MAX_RESOURCES = 40
#: Resources whose neighbours are searched for silent causes.
MAX_NEIGHBOUR_SOURCES = 20
IMPACT_DEPTH = 4
#: Groups remembered per failure signature for the recurring-failure pattern
#: (the newest; enough to see a regular interval, bounded for a long run).
HISTORY_PER_SIGNATURE = 16
#: Updates after which a group's members differ from its last analysis.
_MEMBERSHIP_UPDATES = frozenset(
    {
        correlation_pb2.GROUP_UPDATE_TYPE_CREATED,
        correlation_pb2.GROUP_UPDATE_TYPE_MEMBER_ADDED,
        correlation_pb2.GROUP_UPDATE_TYPE_MERGED,
        correlation_pb2.GROUP_UPDATE_TYPE_SPLIT,
    }
)


def lead_with_pattern_root(candidates: list[Candidate], found: Found | None) -> list[Candidate]:
    """``candidates`` with the pattern's root resource first (added when missing)."""
    if found is None:
        return candidates
    root = node_id(found.root_ref)
    top = candidates[0].score if candidates else found.confidence
    rest = [c for c in candidates if c.node != root]
    existing = next((c for c in candidates if c.node == root), None)
    reason = f"root of the {found.pattern.replace('_', ' ')} pattern"
    if existing is not None:
        lead = replace(
            existing, score=max(top, existing.score), reason=f"{reason}; {existing.reason}"
        )
    else:
        event = found.root_event
        lead = Candidate(
            root,
            found.root_ref,
            top,
            reason,
            event.event_id if event is not None else "",
            event.occurred_us if event is not None else 0,
        )
    return [lead, *rest][: max(len(candidates), 1)]


class Analyst:
    """Keeps every group's root cause, pattern and impact current."""

    def __init__(
        self,
        gate: EngineGate,
        reach: TopologyReach,
        rules: Sequence[ActionRule] = BUILT_IN_RULES,
        knobs: RootCauseKnobs = RootCauseKnobs(),  # noqa: B008 (frozen)
        period_seconds: float = PERIOD_SECONDS,
    ) -> None:
        self.gate = gate
        self.reach = reach
        self.rules = list(rules)
        self.knobs = knobs
        self.period_seconds = period_seconds
        self._pending: dict[str, None] = {}
        self._in_flight = 0
        #: failure signature -> group id -> when that group first showed it
        self._history: dict[str, dict[str, int]] = {}
        self.analysed = 0

    @property
    def awaiting(self) -> int:
        """Groups whose members changed since their last analysis (those being
        analysed right now included)."""
        return len(self._pending) + self._in_flight

    def note_unanalysed(self) -> None:
        """Marks the groups in memory that have no analysis yet (after a restart)."""
        for group_id, group in self.gate.engine.groups.items():
            if group.analysis is None:
                self._pending[group_id] = None

    def note(self, updates: Sequence[correlation_pb2.GroupUpdate]) -> None:
        """Marks the groups ``updates`` changed the members of (called after each commit)."""
        for update in updates:
            if update.type in _MEMBERSHIP_UPDATES:
                self._pending[update.group.group_id] = None
            if update.type == correlation_pb2.GROUP_UPDATE_TYPE_MERGED:
                for gone in update.other_group_ids:
                    self._pending.pop(gone, None)

    async def run(self, stopping: asyncio.Event) -> None:
        """Analyses pending groups every period until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), self.period_seconds)
                return
            except TimeoutError:
                pass
            while self._pending and not stopping.is_set():
                try:
                    await self.analyse_pending()
                except Exception:
                    log.exception("group analysis failed; trying again next period")
                    break

    async def analyse_pending(self) -> int:
        """One pass over at most BATCH pending groups; returns how many were stored."""
        taken = list(self._pending)[:BATCH]
        self._in_flight = len(taken)
        try:
            return await self._analyse(taken)
        finally:
            self._in_flight = 0

    async def _analyse(self, taken: list[str]) -> int:
        engine = self.gate.engine
        snapshots: list[tuple[str, int, list[EventInfo]]] = []
        stored_only: list[str] = []
        for group_id in taken:
            del self._pending[group_id]
            group = engine.find_group(group_id)
            if group is None or group.type in ROLLUP_TYPES:
                continue  # a batch or patient listing has no cause of its own
            if group.loaded and group.members:
                snapshots.append((group_id, group.revision, list(group.members.values())))
            else:
                stored_only.append(group_id)
        if stored_only:
            # Its members left the window before their turn came (a fast replay,
            # a backlog): read them back from the store.
            for loaded in await asyncio.to_thread(self.gate.store.load_groups, stored_only):
                snapshots.append((loaded.group_id, loaded.revision, list(loaded.members.values())))
        results = [
            (group_id, await self.analyse(group_id, revision, members))
            for group_id, revision, members in snapshots
        ]
        if not results:
            return 0

        async def store() -> int:
            stored = 0
            now = time.time_ns() // 1000
            for group_id, message in results:
                group = engine.find_group(group_id)
                if group is None:
                    continue
                group.analysis = message
                engine.log.dirty.add(group_id)
                engine.emit(correlation_pb2.GROUP_UPDATE_TYPE_ANALYZED, group, [], now, [], [], [])
                stored += 1
            return stored

        stored = await self.gate.edit(store)
        self.analysed += stored
        return stored

    def _recheck_later(
        self, group_id: str, before: dict[str, int], after: dict[str, int], at: int
    ) -> None:
        """Sends back for analysis the groups that showed a failure later than
        ``group_id`` did (at ``at``) and whose recurrence of it the new occurrence
        changes: they were analysed without it (a fast replay analyses out of
        event-time order)."""
        for other, when in before.items():
            if when <= at or other == group_id:
                continue
            was = regularity(occurrences(before.values(), when))
            now = regularity(occurrences(after.values(), when))
            if was is not None or now is not None:
                self._pending[other] = None

    async def analyse(
        self, group_id: str, revision: int, members: list[EventInfo]
    ) -> correlation_pb2.Group:
        """The analysis of one group's ``members`` as of ``revision``."""
        facts = GroupFacts.of(members)
        failing = facts.failing or list(facts.resources.values())
        refs = [f.ref for f in failing[:MAX_RESOURCES]]
        reach = await self.reach.reach(refs)
        silent = {}
        if len(failing) >= self.knobs.silent_min_covered and reach:
            around = await self.reach.neighbours(refs[:MAX_NEIGHBOUR_SOURCES])
            around = {n: r for n, r in around.items() if n not in facts.resources}
            silent_reach = await self.reach.reach(around.values())
            reach = {**reach, **silent_reach}
            silent = {n: around[n] for n in silent_reach}
        candidates = [
            replace(c, ref=self.reach.refs.get(c.node, c.ref))
            for c in rank_root_causes(facts, reach, silent, self.knobs)
        ]
        shown = signatures(facts.events)
        history = {
            key: [at for other, at in self._history.get(key, {}).items() if other != group_id]
            for key in shown
        }
        found = best_match(PatternContext(facts, reach, candidates, history))
        for key, at in shown.items():
            seen = self._history.setdefault(key, {})
            if seen.get(group_id) != at:
                before = dict(seen)
                seen[group_id] = at
                self._recheck_later(group_id, before, seen, at)
            if len(seen) > HISTORY_PER_SIGNATURE:
                del seen[min(seen, key=seen.__getitem__)]
        candidates = lead_with_pattern_root(candidates, found)
        root = found.root_ref if found is not None else (candidates[0].ref if candidates else None)
        impact = await self.reach.impact(root, IMPACT_DEPTH) if root is not None else None
        return analysis_message(revision, candidates, found, self.rules, impact)
