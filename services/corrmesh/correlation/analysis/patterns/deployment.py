"""Bad deployment: a rollout, then its new Pods fail (crash loops, image pulls, probes)."""

from __future__ import annotations

import re

from corrmesh.correlation.analysis.patterns.base import Found, Pattern, PatternContext
from corrmesh.correlation.analysis.patterns.vocabulary import (
    NEW_POD_FAILURE_PHRASES,
    ROLLOUT_TYPES,
    text_of,
)
from corrmesh.correlation.analysis.patterns.workloads import workload_name
from corrmesh.correlation.window import EventInfo

_SCALED_UP = re.compile(r"scaled up replica set ([a-z0-9.-]+) to")
#: New-Pod failures needed after the rollout.
MIN_FAILURES = 2


def _new_replica_set(event: EventInfo) -> str:
    found = _SCALED_UP.search(event.description.lower() or event.title.lower())
    return found.group(1) if found else ""


def _is_new_pod_failure(event: EventInfo) -> bool:
    return event.severity >= 2 and any(p in text_of(event) for p in NEW_POD_FAILURE_PHRASES)


class BadDeployment(Pattern):
    name = "bad_deployment"
    specificity = 4

    def match(self, context: PatternContext) -> Found | None:
        events = context.facts.events
        for rollout in (e for e in events if e.type.lower() in ROLLOUT_TYPES):
            new_set = _new_replica_set(rollout)
            if rollout.type.lower() == "scalingreplicaset" and not new_set:
                continue  # a scale-down is the fix, not the cause
            owner = rollout.resource.name
            failures = [
                e
                for e in events
                if e.occurred_us >= rollout.occurred_us
                and _is_new_pod_failure(e)
                and workload_name(e.resource) in (owner, new_set, workload_name(rollout.resource))
            ]
            if len(failures) < MIN_FAILURES:
                continue
            of_new_set = [e for e in failures if new_set and e.resource.name.startswith(new_set)]
            confidence = 0.65 + (0.25 if of_new_set else 0.0)
            first = failures[0]
            summary = (
                f"Root cause: the rollout of {owner} ({new_set or 'new revision'}); "
                f"its new pods fail with {first.type}"
            )
            chain = [rollout, *failures[:10]]
            return Found(
                self.name, rollout, rollout.resource, chain, confidence, summary, first.type
            )
        return None
