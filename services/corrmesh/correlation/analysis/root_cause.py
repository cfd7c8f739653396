"""Ranked root-cause candidates for any group, pattern or not.

The algorithm, and every knob it has (:class:`RootCauseKnobs`):

1. The failing resources ``F`` are those with at least one member at WARNING or
   above that does not resolve something; a group with none ranks all of its
   resources instead.
2. Each resource ``r`` in ``F`` gets four signals in [0, 1]:

   - **order**: how early ``r`` first failed, by rank among ``F``
     (1 for the first, 0 for the last; ties share a rank);
   - **topology**: the share of the other failing resources that ``r``'s
     failure reaches in Topology (its ``GetImpact`` walk, which follows each
     edge the way failure travels), minus ``downstream_penalty`` times the
     share that reach ``r`` (so it runs from -1 to 1); resources whose only
     events say their traffic stopped (:func:`.priors.starved`) are left out
     of both shares, since a starved callee is a symptom of its callers: the upstream-most
     failing resource explains its dependents, and one that others explain
     drops below those that merely failed;
   - **prior**: the highest cause prior of its events (:mod:`.priors`), since
     an OOMKilled or a NodeNotReady is a cause more often than a failed probe;
   - **volume**: its failing events relative to the busiest resource's.

   score = ``order``·w_order + ``topology``·w_topology + ``prior``·w_prior +
   ``volume``·w_volume. When Topology knows none of the resources, the topology
   weight is shared out over the other three in proportion, so a group of
   unknown resources is still ranked on a full scale.
3. **Silent causes.** A resource that raised nothing itself but whose failure
   reaches at least ``silent_min_covered`` failing resources and a share
   ``silent_min_coverage`` of them (a Node under several failing Pods, the
   ConfigMap every failing Pod mounts) is a candidate too: its topology signal
   is the share it covers, its order that of the earliest resource it covers
   times ``silent_order_factor``, its prior :data:`SILENT_KIND_PRIORS` by kind,
   and its volume 0.
4. **Workloads.** Pods fail, but a Deployment (StatefulSet, DaemonSet) is
   what an operator fixes: when failing Pods reach a workload of
   ``roll_up_kinds`` within ``roll_up_max_distance`` edges (their owner
   chain), the workload becomes a candidate scored just above its best Pod
   (``roll_up_bonus`` per failing Pod, at most 0.1 over it).
5. Candidates are sorted by score (earlier first failure breaks ties) and the
   best ``max_candidates`` are kept, each with a reason a person can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corrmesh.correlation.analysis.facts import (
    FAILING_SEVERITY,
    GroupFacts,
    ResourceFacts,
    ref_of,
)
from corrmesh.correlation.analysis.priors import DEFAULT_PRIOR, prior, starved
from corrmesh.correlation.resources import describe
from corrmesh.v1 import event_pb2

#: node id -> (node id it reaches -> distance)
Reach = Mapping[str, Mapping[str, int]]

#: Kinds that a workload owns.
OWNED_KINDS = frozenset({"pod", "replicaset"})

SILENT_KIND_PRIORS: dict[str, float] = {
    "node": 0.8,
    "persistentvolumeclaim": 0.7,
    "pvc": 0.7,
    "configmap": 0.6,
    "secret": 0.5,
    "controller": 0.6,
}


@dataclass(frozen=True)
class RootCauseKnobs:
    """The weights and limits of the ranking (module docstring)."""

    # One setting for every source; chosen on the evaluation sets as a whole
    # (README, Evaluation), not per data set.
    w_order: float = 0.35
    w_topology: float = 0.30
    w_prior: float = 0.10
    w_volume: float = 0.25
    downstream_penalty: float = 1.0
    silent_min_covered: int = 2
    silent_min_coverage: float = 0.6
    silent_order_factor: float = 0.9
    max_candidates: int = 5
    roll_up_kinds: tuple[str, ...] = ("deployment", "statefulset", "daemonset")
    roll_up_max_distance: int = 2
    roll_up_bonus: float = 0.02


@dataclass(frozen=True)
class Candidate:
    """One ranked root-cause candidate."""

    node: str
    ref: event_pb2.ResourceRef
    score: float
    reason: str
    #: Its first failing member; "" for a silent cause.
    event_id: str
    first_us: int


def _order_scores(failing: list[ResourceFacts]) -> dict[str, float]:
    if len(failing) == 1:
        return {failing[0].node: 1.0}
    times = sorted({f.first_failure_us for f in failing})
    last_rank = max(len(times) - 1, 1)
    rank = {t: i for i, t in enumerate(times)}
    return {f.node: 1.0 - rank[f.first_failure_us] / last_rank for f in failing}


def _weights(knobs: RootCauseKnobs, topology_known: bool) -> tuple[float, float, float, float]:
    if topology_known:
        return knobs.w_order, knobs.w_topology, knobs.w_prior, knobs.w_volume
    rest = knobs.w_order + knobs.w_prior + knobs.w_volume
    scale = (rest + knobs.w_topology) / rest if rest else 0.0
    return knobs.w_order * scale, 0.0, knobs.w_prior * scale, knobs.w_volume * scale


def rank_root_causes(
    facts: GroupFacts,
    reach: Reach,
    silent: Mapping[str, event_pb2.ResourceRef] | None = None,
    knobs: RootCauseKnobs = RootCauseKnobs(),
) -> list[Candidate]:
    """Root-cause candidates of the group ``facts`` describes, best first.

    ``reach`` holds, for the resources Topology knows, where their failure
    travels; ``silent`` names further resources (with reach entries) that may
    be causes without having raised an event.
    """
    failing = facts.failing or sorted(facts.resources.values(), key=lambda f: f.first_us)
    if not failing:
        return []
    nodes = [f.node for f in failing]
    others = max(len(nodes) - 1, 1)
    topology_known = any(node in reach for node in nodes)
    w_order, w_topology, w_prior, w_volume = _weights(knobs, topology_known)
    order = _order_scores(failing)
    busiest = max(f.counted for f in failing)
    # A service that only misses its traffic was starved by its callers: its
    # failure runs against the dependency edges, so it says nothing about
    # which way the failure travelled (step 2, topology).
    directed = [f.node for f in failing if not all(starved(e) for e in f.events)]
    candidates = []
    for item in failing:
        reached = reach.get(item.node, {})
        downstream = [n for n in directed if n != item.node and n in reached]
        upstream = [n for n in directed if n != item.node and item.node in reach.get(n, {})]
        topology = (len(downstream) - knobs.downstream_penalty * len(upstream)) / others
        cause_events = [e for e in item.events if not e.resolves] or item.events
        best_prior = max((prior(e) for e in cause_events), default=DEFAULT_PRIOR)
        volume = item.counted / busiest
        score = (
            w_order * order[item.node]
            + w_topology * topology
            + w_prior * best_prior
            + w_volume * volume
        )
        first = next(
            (e for e in item.events if e.severity >= FAILING_SEVERITY and not e.resolves),
            item.events[0],
        )
        reason = _reason(item, order[item.node], downstream, upstream, len(nodes), first.type)
        candidates.append(
            Candidate(
                item.node, item.ref, max(0.0, score), reason, first.event_id, item.first_failure_us
            )
        )
    if facts.failing and len(nodes) >= knobs.silent_min_covered:
        candidates += _silent_candidates(
            failing, order, reach, silent or {}, knobs, w_order, w_topology, w_prior
        )
    candidates += _workloads(candidates, reach, knobs)
    candidates.sort(key=lambda c: (-c.score, c.first_us, c.node))
    return candidates[: knobs.max_candidates]


def _workloads(candidates: list[Candidate], reach: Reach, knobs: RootCauseKnobs) -> list[Candidate]:
    """A candidate for each workload that owns failing candidates (step 4).

    Only an owner counts: a Pod or ReplicaSet whose failure reaches a workload
    it is named after (``cartservice-6hs5v4rw9-2x49k`` -> ``cartservice``), not
    every workload its failure happens to reach through a dependency.
    """
    owned: dict[str, list[Candidate]] = {}
    present = {c.node for c in candidates}
    for candidate in candidates:
        if candidate.node.split("/", 1)[0] not in OWNED_KINDS:
            continue
        name = candidate.ref.name
        for node, distance in reach.get(candidate.node, {}).items():
            kind, _namespace, owner = node.split("/", 2)
            if (
                distance <= knobs.roll_up_max_distance
                and kind in knobs.roll_up_kinds
                and name.startswith(owner + "-")
            ):
                owned.setdefault(node, []).append(candidate)
    found = []
    for node, members in owned.items():
        if node in present:
            continue
        best = max(members, key=lambda c: c.score)
        bonus = min(0.1, knobs.roll_up_bonus * len(members))
        ref = ref_of(node)
        ref.cluster = best.ref.cluster
        count = len(members)
        reason = (
            f"owns {count} failing resource{'s' if count != 1 else ''}, first {describe(best.ref)}"
        )
        first = min(c.first_us for c in members)
        found.append(Candidate(node, ref, best.score + bonus, reason, best.event_id, first))
    return found


def _silent_candidates(
    failing: list[ResourceFacts],
    order: Mapping[str, float],
    reach: Reach,
    silent: Mapping[str, event_pb2.ResourceRef],
    knobs: RootCauseKnobs,
    w_order: float,
    w_topology: float,
    w_prior: float,
) -> list[Candidate]:
    nodes = {f.node: f for f in failing}
    found = []
    for node, ref in silent.items():
        if node in nodes:
            continue
        reached = reach.get(node, {})
        covered = [f for f in failing if f.node in reached]
        share = len(covered) / len(failing)
        if len(covered) < knobs.silent_min_covered or share < knobs.silent_min_coverage:
            continue
        earliest = min(covered, key=lambda f: f.first_failure_us)
        kind_prior = SILENT_KIND_PRIORS.get(ref.kind.lower(), DEFAULT_PRIOR)
        score = (
            w_order * order[earliest.node] * knobs.silent_order_factor
            + w_topology * share
            + w_prior * kind_prior
        )
        reason = (
            f"raised nothing itself, but its failure reaches {len(covered)} of the "
            f"{len(failing)} failing resources, first {describe(earliest.ref)}"
        )
        found.append(Candidate(node, ref, score, reason, "", earliest.first_failure_us))
    return found


def _reason(
    item: ResourceFacts,
    order: float,
    downstream: list[str],
    upstream: list[str],
    failing: int,
    first_type: str,
) -> str:
    parts = []
    what = f" ({first_type})" if first_type else ""
    if failing == 1:
        parts.append(f"the only failing resource{what}")
    elif order == 1.0:
        parts.append(f"failed first{what}")
    else:
        parts.append(f"failed{what}")
    if downstream:
        parts.append(f"its failure reaches {len(downstream)} of the other {failing - 1}")
    if upstream:
        parts.append(
            f"{len(upstream)} failing resource{'s' if len(upstream) > 1 else ''} upstream of it"
        )
    parts.append(f"{item.counted} event{'s' if item.counted != 1 else ''}")
    return ", ".join(parts)
