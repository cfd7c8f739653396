"""Scores of an answer against a scenario's truth.

Definitions (those of the scenario sets' README):

* An event missing from the answer, or assigned None, is *ungrouped*: a unit
  of its own that pairs with nothing.
* **Pairwise precision / recall / F1** over incident events: a pair is
  positive when both events belong to one incident, predicted positive when
  both sit in one group. Precision is None when no pair was predicted; F1 is 0
  when either is 0 or undefined (and None when the truth has no pair).
* **ARI**, the adjusted Rand index from the contingency table, over all events
  (each noise event its own truth cluster) and over incident events only;
  1.0 when both labelings are trivial alike (expected index equals its maximum).
* **Noise reduction** = 1 - (groups + ungrouped events) / events.
* **Root cause**: an incident's group is the one holding most of its events,
  ties going to the group whose first event comes earliest in the stream (then
  the smaller group id). A candidate matches *strictly* when it is the root
  cause's id (or an alternative's) or its bare name, and at *service level*
  also when it is the root cause's service or a resource of that service.
  An incident with no grouped event is a miss.
* **incidents_split**: incidents whose grouped events lie in more than one
  group; **incidents_fragmented** counts ungrouped events as pieces too.
* **groups_mixing_incidents**: groups (among those holding incident events)
  with events of more than one incident; **noise_in_incident_groups**: noise
  events placed in groups that hold incident events, over all noise events.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from corrmesh.evaluation.answer import Answer
from corrmesh.evaluation.scenario import Incident, Scenario, Truth, bare_name


def _pairs(count: int) -> int:
    return count * (count - 1) // 2


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class Contingency:
    """Pair counts of two labelings of the same items, from their contingency table."""

    def __init__(self, truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> None:
        if len(truth) != len(predicted):
            raise ValueError("the two labelings must label the same items")
        self.items = len(truth)
        self.true_pairs = sum(_pairs(c) for c in Counter(truth).values())
        self.predicted_pairs = sum(_pairs(c) for c in Counter(predicted).values())
        self.correct_pairs = sum(
            _pairs(c) for c in Counter(zip(truth, predicted, strict=True)).values()
        )

    @property
    def precision(self) -> float | None:
        return _ratio(self.correct_pairs, self.predicted_pairs)

    @property
    def recall(self) -> float | None:
        return _ratio(self.correct_pairs, self.true_pairs)

    @property
    def f1(self) -> float | None:
        precision, recall = self.precision, self.recall
        if precision and recall:
            return 2 * precision * recall / (precision + recall)
        return 0.0 if self.true_pairs else None

    def adjusted_rand_index(self) -> float:
        """(index - expected) / (maximum - expected), Hubert and Arabie's adjustment."""
        if self.items < 2:
            return 1.0
        expected = self.true_pairs * self.predicted_pairs / _pairs(self.items)
        maximum = (self.true_pairs + self.predicted_pairs) / 2
        if maximum == expected:
            return 1.0
        return (self.correct_pairs - expected) / (maximum - expected)


class ServiceIndex:
    """Which services a root-cause candidate (an id, a bare name) may denote.

    A resource's service is the one its events name most often; otherwise, from
    the topology, a service node is its own service and a service's ``owns``
    edges give theirs.
    """

    def __init__(self, scenario: Scenario) -> None:
        named: dict[str, Counter[str]] = defaultdict(Counter)
        for event in scenario.events:
            if event.service:
                named[event.resource_id][event.service] += 1
        self.service_of = {rid: c.most_common(1)[0][0] for rid, c in named.items()}
        topology = scenario.topology
        for node in topology.nodes.values():
            if node.kind == "service":
                self.service_of.setdefault(node.node_id, node.name)
        for edge in topology.edges:
            owner = topology.nodes.get(edge.source)
            if edge.type == "owns" and owner is not None and owner.kind == "service":
                self.service_of.setdefault(edge.target, owner.name)
        self.ids_by_name: dict[str, set[str]] = defaultdict(set)
        for node in topology.nodes.values():
            self.ids_by_name[node.name].add(node.node_id)
        for event in scenario.events:
            self.ids_by_name[bare_name(event.resource_id)].add(event.resource_id)

    def services(self, candidate: str) -> set[str]:
        found = {self.service_of[candidate]} if candidate in self.service_of else set()
        for resource_id in self.ids_by_name.get(candidate, ()):
            if resource_id in self.service_of:
                found.add(self.service_of[resource_id])
        return found


def candidate_matches(candidate: str, incident: Incident, index: ServiceIndex) -> tuple[bool, bool]:
    """(strict, service level) for one candidate against an incident's root cause."""
    accepted = (incident.root_cause, *incident.alternatives)
    name = candidate.strip()
    if name in accepted or name in {bare_name(a) for a in accepted}:
        return True, True
    service = incident.root_cause_service
    service_level = bool(service) and (name == service or service in index.services(name))
    return False, service_level


def first_ranks(
    candidates: Iterable[str], incident: Incident, index: ServiceIndex
) -> tuple[int | None, int | None]:
    """1-based rank of the first strict and of the first service-level match."""
    strict_rank = service_rank = None
    for rank, candidate in enumerate(candidates, start=1):
        strict, service_level = candidate_matches(candidate, incident, index)
        if strict and strict_rank is None:
            strict_rank = rank
        if service_level and service_rank is None:
            service_rank = rank
    return strict_rank, service_rank


@dataclass(frozen=True, slots=True)
class Scores:
    events: int
    incident_events: int
    noise_events: int
    incidents: int
    coverage: float | None
    grouped_fraction: float | None
    pairwise_precision: float | None
    pairwise_recall: float | None
    pairwise_f1: float | None
    ari: float
    ari_incident_events: float
    noise_reduction: float | None
    alerts_in: int
    groups_out: int
    groups: int
    ungrouped: int
    rc_top1_strict: float | None
    rc_top3_strict: float | None
    rc_top1_service: float | None
    rc_top3_service: float | None
    incidents_split: float | None
    incidents_fragmented: float | None
    groups_mixing_incidents: float | None
    groups_with_incident_events: int
    noise_in_incident_groups: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(scenario: Scenario, truth: Truth, answer: Answer) -> Scores:
    """Every metric of the module docstring for ``answer`` on ``scenario``."""
    order = {event.event_id: n for n, event in enumerate(scenario.events)}
    event_ids = list(order)
    group_of = {e: answer.assignments.get(e) for e in event_ids}
    unit = {e: ("group", g) if g is not None else ("alone", e) for e, g in group_of.items()}
    incident_of = {e: i.incident_id for i in truth.incidents for e in i.event_ids}

    in_incidents = [e for e in event_ids if e in incident_of]
    incident_pairs = Contingency(
        [incident_of[e] for e in in_incidents], [unit[e] for e in in_incidents]
    )
    all_pairs = Contingency(
        [incident_of.get(e, ("noise", e)) for e in event_ids], [unit[e] for e in event_ids]
    )

    members: dict[str, list[str]] = defaultdict(list)
    for event_id in event_ids:
        group_id = group_of[event_id]
        if group_id is not None:
            members[group_id].append(event_id)
    ungrouped = len(event_ids) - sum(len(m) for m in members.values())
    first_position = {g: min(order[e] for e in m) for g, m in members.items()}

    index = ServiceIndex(scenario)
    hits: Counter[str] = Counter()
    split = fragmented = 0
    for incident in truth.incidents:
        in_groups: Counter[str] = Counter()
        for event_id in incident.event_ids:
            if (group_id := group_of.get(event_id)) is not None:
                in_groups[group_id] += 1
        split += len(in_groups) > 1
        fragmented += len({unit[e] for e in incident.event_ids if e in unit}) > 1
        if not in_groups:
            continue
        best = min(in_groups, key=lambda g: (-in_groups[g], first_position[g], g))
        record = answer.groups.get(best)
        strict_rank, service_rank = first_ranks(
            record.root_cause_candidates if record else (), incident, index
        )
        hits["strict_top1"] += strict_rank == 1
        hits["strict_top3"] += strict_rank is not None and strict_rank <= 3
        hits["service_top1"] += service_rank == 1
        hits["service_top3"] += service_rank is not None and service_rank <= 3

    mixing = with_incident = noise_placed = 0
    for group_events in members.values():
        incidents = {incident_of[e] for e in group_events if e in incident_of}
        if incidents:
            with_incident += 1
            mixing += len(incidents) > 1
            noise_placed += sum(e not in incident_of for e in group_events)

    n_events = len(event_ids)
    n_incidents = len(truth.incidents)
    n_noise = n_events - len(in_incidents)
    units = len(members) + ungrouped
    return Scores(
        events=n_events,
        incident_events=len(in_incidents),
        noise_events=n_noise,
        incidents=n_incidents,
        coverage=_ratio(sum(e in answer.assignments for e in event_ids), n_events),
        grouped_fraction=_ratio(n_events - ungrouped, n_events),
        pairwise_precision=incident_pairs.precision,
        pairwise_recall=incident_pairs.recall,
        pairwise_f1=incident_pairs.f1,
        ari=all_pairs.adjusted_rand_index(),
        ari_incident_events=incident_pairs.adjusted_rand_index(),
        noise_reduction=_ratio(n_events - units, n_events),
        alerts_in=n_events,
        groups_out=units,
        groups=len(members),
        ungrouped=ungrouped,
        rc_top1_strict=_ratio(hits["strict_top1"], n_incidents),
        rc_top3_strict=_ratio(hits["strict_top3"], n_incidents),
        rc_top1_service=_ratio(hits["service_top1"], n_incidents),
        rc_top3_service=_ratio(hits["service_top3"], n_incidents),
        incidents_split=_ratio(split, n_incidents),
        incidents_fragmented=_ratio(fragmented, n_incidents),
        groups_mixing_incidents=_ratio(mixing, with_incident),
        groups_with_incident_events=with_incident,
        noise_in_incident_groups=_ratio(noise_placed, n_noise),
    )
