"""Recommended actions: a rule table operators can extend.

A rule names a pattern and, optionally, a cause (the event type that started
it, compared in lower case); the first rule that matches a pattern match gives
its action, with ``{root}`` replaced by the root-cause resource's name.
Operators add rules in a YAML file (``CORRMESH_CORRELATION_ACTIONS_FILE``)::

    actions:
      - pattern: resource_exhaustion
        cause: OOMKilled
        action: "Raise the memory limit of {root} or find its leak"

Their rules come before the built-in ones, so they can override any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ActionRule:
    pattern: str
    action: str
    #: Event type that must have started the pattern; "" matches any.
    cause: str = ""

    def matches(self, pattern: str, cause: str) -> bool:
        return self.pattern == pattern and (not self.cause or self.cause == cause.lower())


BUILT_IN_RULES: tuple[ActionRule, ...] = (
    ActionRule(
        "resource_exhaustion", "Raise the memory limit of {root} or find what leaks", "oomkilled"
    ),
    ActionRule(
        "resource_exhaustion", "Raise the memory limit of {root} or find what leaks", "oomkilling"
    ),
    ActionRule(
        "resource_exhaustion",
        "Free disk space or grow the volume behind {root}",
        "nodehasdiskpressure",
    ),
    ActionRule("resource_exhaustion", "Give {root} more of the exhausted resource or scale it out"),
    ActionRule(
        "cascading_failure",
        "Raise the memory limit of {root} or find what leaks; its dependents recover after it",
        "oomkilled",
    ),
    ActionRule("cascading_failure", "Fix {root} first; its dependents should recover once it does"),
    ActionRule(
        "bad_deployment",
        "Roll back {root} (kubectl rollout undo) and check the new image and config",
    ),
    ActionRule(
        "node_failure", "Cordon and drain node {root}, then check its kubelet, network and disk"
    ),
    ActionRule(
        "network_partition", "Check the network of {root}: CNI pods, node routes, security rules"
    ),
    ActionRule(
        "recurring_failure", "Find why {root} fails on a schedule (leak, cron job, traffic peak)"
    ),
    ActionRule("alert_storm", "Look at {root} first; silence the duplicates while it is fixed"),
)


class ActionFileError(ValueError):
    """The actions file cannot be read or has a malformed rule."""


def load_rules(path: str | Path) -> list[ActionRule]:
    """The operator's rules in ``path``; raises ActionFileError naming the bad entry."""
    try:
        document: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ActionFileError(f"actions file {path}: {exc}") from exc
    entries = (document or {}).get("actions") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ActionFileError(f"actions file {path}: actions: must be a list of rules")
    rules = []
    for index, entry in enumerate(entries):
        where = f"actions file {path}: actions[{index}]"
        if not isinstance(entry, dict):
            raise ActionFileError(f"{where}: must be a mapping with pattern and action")
        unknown = set(entry) - {"pattern", "cause", "action"}
        if unknown:
            raise ActionFileError(f"{where}.{sorted(unknown)[0]}: is not a known field")
        for key in ("pattern", "action"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ActionFileError(f"{where}.{key}: is required and must be a string")
        cause = entry.get("cause", "")
        if not isinstance(cause, str):
            raise ActionFileError(f"{where}.cause: must be a string")
        rules.append(ActionRule(entry["pattern"], entry["action"], cause.lower()))
    return rules


def recommend(rules: Sequence[ActionRule], pattern: str, cause: str, root: str) -> str:
    """The action of the first rule matching ``pattern`` and ``cause``; "" when none does."""
    for rule in rules:
        if rule.matches(pattern, cause):
            return rule.action.replace("{root}", root)
    return ""
