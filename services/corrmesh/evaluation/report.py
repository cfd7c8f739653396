"""Reporting: one scenario's metrics, and the one-row-per-set table of a whole run.

A set is a top-level directory under the scenarios root. When it is a scenario
itself its row is that scenario; when it holds several (``itbench/scenario_N``)
its row is the mean over them, as the scenario sets' README reports its
baselines, with the event and group counts summed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corrmesh.evaluation.scoring import Scores

#: Metrics averaged over the scenarios of a set.
MEAN_METRICS = (
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f1",
    "ari",
    "ari_incident_events",
    "noise_reduction",
    "rc_top1_strict",
    "rc_top3_strict",
    "rc_top1_service",
    "rc_top3_service",
    "incidents_split",
    "incidents_fragmented",
    "groups_mixing_incidents",
    "noise_in_incident_groups",
)
#: Counts summed over the scenarios of a set.
SUM_METRICS = ("events", "incidents", "alerts_in", "groups_out")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario's run: where it was, what it took, how it scored."""

    name: str
    events: int
    groups: int
    replay_seconds: float
    scores: Scores | None = None
    conflicts: int = 0
    #: Groups whose root-cause analysis is older than the group (0 without analysis).
    analysis_behind: int = 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.replay_seconds if self.replay_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "events": self.events,
            "groups": self.groups,
            "replay_seconds": round(self.replay_seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            "events_in_several_groups": self.conflicts,
            "groups_with_analysis_behind": self.analysis_behind,
            "scores": self.scores.as_dict() if self.scores else None,
        }


@dataclass(slots=True)
class Row:
    """One line of the table: a scenario, or the mean over a set of them."""

    name: str
    scenarios: int
    replay_seconds: float
    events: int
    metrics: dict[str, Any] = field(default_factory=dict)
    #: True for a directory of scenarios, whose metrics are means.
    is_set: bool = False

    @property
    def events_per_second(self) -> float:
        return self.events / self.replay_seconds if self.replay_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "scenarios": self.scenarios,
            "mean_over_scenarios": self.is_set,
            "replay_seconds": round(self.replay_seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            **self.metrics,
        }


def _set_name(name: str) -> str:
    return name.split("/", 1)[0]


def rows(outcomes: list[Outcome]) -> list[Row]:
    """One row per set, in the order the sets first appear."""
    by_set: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_set[_set_name(outcome.name)].append(outcome)
    table = []
    for name, members in by_set.items():
        scored = [o.scores.as_dict() for o in members if o.scores is not None]
        metrics: dict[str, Any] = {}
        for key in MEAN_METRICS:
            values = [s[key] for s in scored if s[key] is not None]
            metrics[key] = fmean(values) if values else None
        for key in SUM_METRICS:
            metrics[key] = sum(s[key] for s in scored) if scored else None
        table.append(
            Row(
                name=name,
                scenarios=len(members),
                replay_seconds=sum(o.replay_seconds for o in members),
                events=sum(o.events for o in members),
                metrics=metrics,
                is_set=any(o.name != name for o in members),
            )
        )
    return table


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


COLUMNS = (
    "set",
    "P",
    "R",
    "F1",
    "ARI (all / incident)",
    "noise red. (in -> out)",
    "RC top-1 / top-3 strict",
    "RC top-1 / top-3 service",
    "split",
    "mixing",
    "replay s",
    "events/s",
)


def _cells(row: Row) -> list[str]:
    m = row.metrics
    name = f"{row.name} (mean of {row.scenarios})" if row.is_set else row.name
    flow = f"{_f(m['noise_reduction'])} ({m['alerts_in']} -> {m['groups_out']})"
    return [
        name,
        _f(m["pairwise_precision"]),
        _f(m["pairwise_recall"]),
        _f(m["pairwise_f1"]),
        f"{_f(m['ari'])} / {_f(m['ari_incident_events'])}",
        flow,
        f"{_f(m['rc_top1_strict'])} / {_f(m['rc_top3_strict'])}",
        f"{_f(m['rc_top1_service'])} / {_f(m['rc_top3_service'])}",
        _f(m["incidents_split"]),
        _f(m["groups_mixing_incidents"]),
        f"{row.replay_seconds:.1f}",
        f"{row.events_per_second:,.0f}",
    ]


def table(table_rows: list[Row], title: str = "evaluation") -> Table:
    """The rows as a rich table."""
    out = Table(title=title)
    for column in COLUMNS:
        out.add_column(column, justify="left" if column == "set" else "right")
    for row in table_rows:
        out.add_row(*_cells(row))
    return out


def markdown(table_rows: list[Row]) -> str:
    """The rows as a Markdown table, for the README."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table_rows]
    return "\n".join(lines) + "\n"


def write_results(outcomes: list[Outcome], table_rows: list[Row], directory: Path) -> None:
    """``results.json`` (rows and every scenario) and ``results.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "sets": [row.as_dict() for row in table_rows],
        "scenarios": [o.as_dict() for o in outcomes],
    }
    (directory / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (directory / "results.md").write_text(markdown(table_rows), encoding="utf-8")


def print_outcome(outcome: Outcome, console: Console) -> None:
    """One scenario's metrics, as a two-column table."""
    out = Table(title=escape(outcome.name), show_header=False)
    out.add_column("metric")
    out.add_column("value", justify="right")
    speed = f"{outcome.replay_seconds:.2f} s, {outcome.events_per_second:,.0f} events/s"
    out.add_row("replay (first publish -> analysis current)", speed)
    out.add_row("groups formed", str(outcome.groups))
    if outcome.conflicts:
        out.add_row("events listed in several groups", str(outcome.conflicts))
    if outcome.analysis_behind:
        out.add_row("groups whose analysis is behind", str(outcome.analysis_behind))
    s = outcome.scores
    if s is None:
        console.print(out)
        console.print("no truth.json: nothing to score")
        return
    rows_ = [
        ("events (incident / noise)", f"{s.events} ({s.incident_events} / {s.noise_events})"),
        ("incidents", str(s.incidents)),
        ("coverage / grouped", f"{_f(s.coverage)} / {_f(s.grouped_fraction)}"),
        (
            "pairwise P / R / F1",
            f"{_f(s.pairwise_precision)} / {_f(s.pairwise_recall)} / {_f(s.pairwise_f1)}",
        ),
        ("ARI all events / incident events", f"{_f(s.ari)} / {_f(s.ari_incident_events)}"),
        (
            "noise reduction (alerts in -> groups out)",
            f"{_f(s.noise_reduction)} ({s.alerts_in} -> {s.groups_out})",
        ),
        ("root cause top-1 / top-3, strict", f"{_f(s.rc_top1_strict)} / {_f(s.rc_top3_strict)}"),
        (
            "root cause top-1 / top-3, service",
            f"{_f(s.rc_top1_service)} / {_f(s.rc_top3_service)}",
        ),
        ("incidents split over >1 group", _f(s.incidents_split)),
        ("incidents not in one unit", _f(s.incidents_fragmented)),
        ("groups mixing incidents", _f(s.groups_mixing_incidents)),
        ("noise events in incident groups", _f(s.noise_in_incident_groups)),
    ]
    for label, value in rows_:
        out.add_row(label, value)
    console.print(out)
