"""Small scenario directories in the evaluation format, written by tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2024, 1, 1, tzinfo=UTC)


def stamp(seconds: float) -> str:
    """RFC 3339 with milliseconds, ``seconds`` after the scenario clock's start."""
    moment = START + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event(
    number: int,
    seconds: float,
    resource: str,
    service: str = "",
    title: str = "",
    fingerprint: str = "",
    domain: str = "kubernetes",
    source: str = "metric",
    severity: str = "major",
    type_: str = "alert",
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One events.jsonl line; ``resource`` is a node id ``kind/namespace/name``."""
    kind, namespace, name = resource.split("/", 2)
    return {
        "id": f"e-{number:06d}",
        "time": stamp(seconds),
        "domain": domain,
        "source": source,
        "resource": {"kind": kind, "name": name, "namespace": namespace},
        "service": service,
        "severity": severity,
        "type": type_,
        "title": title or f"{type_} on {name}",
        "description": "",
        "fingerprint": fingerprint,
        "attributes": attributes or {},
    }


def node(resource: str) -> dict[str, str]:
    kind, namespace, name = resource.split("/", 2)
    return {"id": resource, "kind": kind, "name": name, "namespace": namespace}


def incident(
    number: int,
    root_cause: str,
    events: Sequence[str],
    service: str = "",
    alternatives: Sequence[str] = (),
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"inc-{number:04d}",
        "root_cause": root_cause,
        "root_cause_service": service,
        "fault": "test",
        "start": stamp(0),
        "source_ref": "written by a test",
        "events": list(events),
    }
    if alternatives:
        record["root_cause_alternatives"] = list(alternatives)
    return record


def write_scenario(
    directory: Path,
    events: Iterable[dict[str, Any]],
    nodes: Iterable[str] = (),
    edges: Iterable[tuple[str, str, str]] = (),
    incidents: Iterable[dict[str, Any]] | None = None,
    noise: Iterable[str] = (),
) -> Path:
    """A scenario directory; no truth.json when ``incidents`` is None."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "events.jsonl").open("w") as out:
        for line in events:
            out.write(json.dumps(line) + "\n")
    topology = {
        "nodes": [node(n) for n in nodes],
        "edges": [{"from": a, "to": b, "type": t} for a, b, t in edges],
    }
    (directory / "topology.json").write_text(json.dumps(topology))
    if incidents is not None:
        truth = {"incidents": list(incidents), "noise": list(noise)}
        (directory / "truth.json").write_text(json.dumps(truth))
    return directory


def write_answer_files(
    directory: Path,
    assignments: Iterable[tuple[str, str | None]],
    groups: Mapping[str, Sequence[str]],
) -> Path:
    """An ASSIGNMENTS_DIR: (event id, group id) lines and each group's candidates."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "assignments.jsonl").open("w") as out:
        for event_id, group_id in assignments:
            out.write(json.dumps({"event_id": event_id, "group_id": group_id}) + "\n")
    with (directory / "groups.jsonl").open("w") as out:
        for group_id, candidates in groups.items():
            line = {"group_id": group_id, "root_cause_candidates": list(candidates)}
            out.write(json.dumps(line | {"pattern": None}) + "\n")
    return directory
