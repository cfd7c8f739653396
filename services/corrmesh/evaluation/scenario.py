"""Reading a scenario directory: its events, topology and (for scoring only) truth.

The system under test may read ``events.jsonl`` and ``topology.json``;
``truth.json`` is loaded by a separate function so that the replay path never
holds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
TOPOLOGY_FILE = "topology.json"
TRUTH_FILE = "truth.json"


def node_id(kind: str, namespace: str, name: str) -> str:
    """The scenario format's resource id: ``<kind>/<namespace>/<name>``."""
    return f"{kind}/{namespace}/{name}"


def bare_name(resource_id: str) -> str:
    """The name part of a node id (``pod//orders-1`` -> ``orders-1``)."""
    return resource_id.split("/", 2)[-1]


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """One line of ``events.jsonl``; ``raw`` keeps every field as read."""

    event_id: str
    time: str
    resource_id: str
    service: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TopologyNode:
    node_id: str
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class TopologyEdge:
    source: str
    target: str
    type: str


@dataclass(frozen=True, slots=True)
class Topology:
    nodes: dict[str, TopologyNode] = field(default_factory=dict)
    edges: tuple[TopologyEdge, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a system under test may read: the events in order and the topology."""

    events: tuple[ScenarioEvent, ...]
    topology: Topology


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    root_cause: str
    root_cause_service: str
    alternatives: tuple[str, ...]
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Truth:
    incidents: tuple[Incident, ...]
    noise: tuple[str, ...]


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            yield number, record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file; blank lines are skipped."""
    return [record for _, record in _jsonl(path)]


def load_events(path: Path) -> tuple[ScenarioEvent, ...]:
    """``events.jsonl`` in file order (which the format says is time order)."""
    events = []
    for number, record in _jsonl(path):
        try:
            resource = record["resource"]
            events.append(
                ScenarioEvent(
                    event_id=str(record["id"]),
                    time=str(record["time"]),
                    resource_id=node_id(
                        resource["kind"], resource.get("namespace", ""), resource["name"]
                    ),
                    service=str(record.get("service") or ""),
                    raw=record,
                )
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: missing field {exc}") from exc
    return tuple(events)


def load_topology(path: Path) -> Topology:
    """``topology.json``, or an empty topology when the scenario has none."""
    if not path.exists():
        return Topology()
    data = json.loads(path.read_text(encoding="utf-8"))
    nodes = {
        n["id"]: TopologyNode(n["id"], n["kind"], n.get("namespace", ""), n["name"])
        for n in data.get("nodes", [])
    }
    edges = tuple(TopologyEdge(e["from"], e["to"], e["type"]) for e in data.get("edges", []))
    return Topology(nodes, edges)


def load_scenario(directory: Path) -> Scenario:
    """The inputs a system under test may read; never the truth."""
    return Scenario(
        events=load_events(directory / EVENTS_FILE),
        topology=load_topology(directory / TOPOLOGY_FILE),
    )


def has_truth(directory: Path) -> bool:
    return (directory / TRUTH_FILE).exists()


def load_truth(directory: Path) -> Truth:
    """``truth.json``: for the scorer only."""
    data = json.loads((directory / TRUTH_FILE).read_text(encoding="utf-8"))
    incidents = tuple(
        Incident(
            incident_id=str(i["id"]),
            root_cause=str(i["root_cause"]),
            root_cause_service=str(i.get("root_cause_service") or ""),
            alternatives=tuple(str(a) for a in i.get("root_cause_alternatives", [])),
            event_ids=tuple(str(e) for e in i["events"]),
        )
        for i in data.get("incidents", [])
    )
    return Truth(incidents, tuple(str(e) for e in data.get("noise", [])))


def find_scenarios(root: Path) -> list[Path]:
    """Every scenario directory (one holding ``events.jsonl``) under ``root``, sorted.

    ``root`` itself counts when it is a scenario; nested sets such as
    ``itbench/scenario_N`` are found at any depth.
    """
    return sorted(p.parent for p in root.rglob(EVENTS_FILE))
