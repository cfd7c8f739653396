"""Kubernetes equality-based label selectors: ``app=api,tier!=db,canary,!legacy``.

Supported requirements, comma-separated and all required: ``key=value``,
``key==value``, ``key!=value`` (also true when the label is absent, as in
Kubernetes), ``key`` (the label exists) and ``!key`` (it does not). Set-based
requirements (``in``, ``notin``) are rejected rather than misread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# A label key: optional DNS-subdomain prefix and a name of letters, digits, "-", "_", ".".
_KEY = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"^(?P<not>!)?\s*(?P<key>{_KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<value>{_VALUE}))?$"
)


class SelectorError(ValueError):
    """The selector text is not one this parser accepts."""


@dataclass(frozen=True)
class Requirement:
    key: str
    #: "=", "!=", "exists" or "!exists".
    op: str
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse_selector(text: str) -> Selector:
    """Parses ``text``; an empty selector matches everything."""
    requirements: list[Requirement] = []
    if not text.strip():
        return Selector(())
    for index, part in enumerate(text.split(",")):
        match = _REQUIREMENT.match(part.strip())
        if match is None:
            raise SelectorError(
                f"requirement {index + 1} is not key, !key, key=value or key!=value"
            )
        key, op, value = match["key"], match["op"], match["value"] or ""
        if match["not"]:
            if op:
                raise SelectorError(f"requirement {index + 1}: '!' only negates a bare key")
            requirements.append(Requirement(key, "!exists"))
        elif op is None:
            requirements.append(Requirement(key, "exists"))
        else:
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", value))
    return Selector(tuple(requirements))
