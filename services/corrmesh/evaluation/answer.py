"""The answer of a run: which group each event went to, and each group's root cause.

Built from Correlation's groups and written in the scenario format's
ASSIGNMENTS_DIR layout (``assignments.jsonl``, ``groups.jsonl``), which is also
what the scorer reads back, so a score always describes the files on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corrmesh.evaluation.scenario import node_id, read_jsonl
from corrmesh.v1 import correlation_pb2, event_pb2

ASSIGNMENTS_FILE = "assignments.jsonl"
GROUPS_FILE = "groups.jsonl"


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: str
    #: Resource ids, best first.
    root_cause_candidates: tuple[str, ...] = ()
    pattern: str | None = None


@dataclass(slots=True)
class Answer:
    """event id -> group id (None: in no group), and the groups' records.

    An event absent from ``assignments`` had no line: the scorer treats it as
    ungrouped, as it does None.
    """

    assignments: dict[str, str | None] = field(default_factory=dict)
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    #: Events that Correlation listed in more than one group (the first one is kept).
    conflicts: int = 0


def _resource_id(ref: event_pb2.ResourceRef) -> str:
    return node_id(ref.kind, ref.namespace, ref.name) if ref.name else ""


def candidates_of(group: correlation_pb2.Group) -> tuple[str, ...]:
    """The group's root-cause candidates as resource ids, best first, each once.

    Candidates are ordered by score (ties keep the engine's order); one without
    a resource takes the resource of the member event it names.
    """
    member_resources = {m.event_id: m.resource for m in group.members}
    ranked = sorted(group.root_cause_candidates, key=lambda c: -c.score)
    ids: dict[str, None] = {}
    for candidate in ranked:
        resource_id = _resource_id(candidate.resource)
        if not resource_id and candidate.event_id in member_resources:
            resource_id = _resource_id(member_resources[candidate.event_id])
        if resource_id:
            ids.setdefault(resource_id, None)
    return tuple(ids)


def pattern_of(group: correlation_pb2.Group) -> str | None:
    return group.pattern.pattern if group.HasField("pattern") and group.pattern.pattern else None


def collect(event_ids: Sequence[str], groups: Iterable[correlation_pb2.Group]) -> Answer:
    """The answer for the scenario events ``event_ids`` from every group listed."""
    answer = Answer(assignments=dict.fromkeys(event_ids))
    for group in groups:
        answer.groups[group.group_id] = GroupRecord(
            group.group_id, candidates_of(group), pattern_of(group)
        )
        for member in group.members:
            if member.event_id not in answer.assignments:
                continue  # not a scenario event
            if answer.assignments[member.event_id] is not None:
                answer.conflicts += 1
                continue
            answer.assignments[member.event_id] = group.group_id
    return answer


def write_answer(answer: Answer, directory: Path) -> None:
    """``assignments.jsonl`` (one line per event) and ``groups.jsonl`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ASSIGNMENTS_FILE).open("w", encoding="utf-8") as out:
        for event_id, group_id in answer.assignments.items():
            out.write(json.dumps({"event_id": event_id, "group_id": group_id}) + "\n")
    with (directory / GROUPS_FILE).open("w", encoding="utf-8") as out:
        for record in answer.groups.values():
            line = {
                "group_id": record.group_id,
                "root_cause_candidates": list(record.root_cause_candidates),
                "pattern": record.pattern,
            }
            out.write(json.dumps(line) + "\n")


def read_answer(directory: Path) -> Answer:
    """An ASSIGNMENTS_DIR as written by any system; a repeated event's last line wins."""
    answer = Answer()
    for line in read_jsonl(directory / ASSIGNMENTS_FILE):
        event_id = line.get("event_id")
        if not isinstance(event_id, str):
            continue
        group_id = line.get("group_id")
        answer.assignments[event_id] = None if group_id is None else str(group_id)
    groups_path = directory / GROUPS_FILE
    if groups_path.exists():
        for line in read_jsonl(groups_path):
            if line.get("group_id") is None:
                continue
            group_id = str(line["group_id"])
            candidates = tuple(
                str(c) for c in (line.get("root_cause_candidates") or []) if c is not None
            )
            pattern = line.get("pattern")
            answer.groups[group_id] = GroupRecord(
                group_id, candidates, str(pattern) if pattern else None
            )
    return answer
