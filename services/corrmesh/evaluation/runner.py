"""Running scenarios: a fresh mesh per scenario, the replay, the answer, the score.

Each scenario gets a mesh of its own on free ports with its state in a
temporary directory, so scenarios never see each other's groups; the mesh is
stopped when the scenario ends, also on an error or Ctrl-C. The truth is read
after the mesh is gone, only to score the answer written to disk.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corrmesh.cli.mesh import Mesh
from corrmesh.evaluation.answer import collect, read_answer, write_answer
from corrmesh.evaluation.replay import Addresses, ReplayError, replay
from corrmesh.evaluation.report import Outcome, Row, print_outcome, rows, table, write_results
from corrmesh.evaluation.scenario import find_scenarios, has_truth, load_scenario, load_truth
from corrmesh.evaluation.scoring import score
from corrmesh.v1 import correlation_pb2

METRICS_FILE = "metrics.json"
#: Output width when the output is not a terminal.
WIDE_OUTPUT = 200


@contextmanager
def fresh_mesh() -> Iterator[Mesh]:
    """All four services on free ports, state in a temporary directory, always stopped."""
    with tempfile.TemporaryDirectory(prefix="corrmesh-eval-") as state:
        mesh = Mesh.on_free_ports(Path(state) / "mesh")
        mesh.start()
        try:
            yield mesh
        finally:
            mesh.stop()


def _liveness(mesh: Mesh) -> str | None:
    for service, entry in mesh.processes.items():
        if entry.process.poll() is not None:
            return f"{service} exited with {entry.process.returncode}:\n{mesh.log_tail(service)}"
    return None


def analysis_behind(groups: Sequence[correlation_pb2.Group]) -> int:
    """Groups never analysed, once the engine analyses at all.

    GetStats said none was waiting; a count here means the two disagree. A
    status change after the analysis raises ``revision`` past
    ``analyzed_revision`` without calling for a new one, so only a group with
    no analysis at all counts.
    """
    if not any(g.analyzed_revision for g in groups):
        return 0
    return sum(g.analyzed_revision == 0 for g in groups)


def evaluate(scenario_dir: Path, out_dir: Path, console: Console, name: str = "") -> Outcome:
    """Replays one scenario through a fresh mesh, writes its answer and scores it."""
    name = name or scenario_dir.name
    scenario = load_scenario(scenario_dir)
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("consumed; {task.fields[published]} published"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress,
        fresh_mesh() as mesh,
    ):
        task = progress.add_task(escape(name), total=len(scenario.events), published=0)

        def report(consumed: int, published: int) -> None:
            progress.update(task, completed=consumed, published=published)

        addresses = Addresses(
            mesh.address("ingest"), mesh.address("correlation"), mesh.address("topology")
        )
        try:
            result = asyncio.run(replay(scenario, addresses, lambda: _liveness(mesh), report))
        except ReplayError as exc:
            raise ReplayError(
                f"{exc}\n--- correlation log\n{mesh.log_tail('correlation')}"
            ) from exc
    answer = collect([event.event_id for event in scenario.events], result.groups)
    write_answer(answer, out_dir)
    scores = None
    if has_truth(scenario_dir):
        scores = score(scenario, load_truth(scenario_dir), read_answer(out_dir))
    outcome = Outcome(
        name=name,
        events=result.events,
        groups=len(result.groups),
        replay_seconds=result.seconds,
        scores=scores,
        conflicts=answer.conflicts,
        analysis_behind=analysis_behind(result.groups),
    )
    (out_dir / METRICS_FILE).write_text(
        json.dumps(outcome.as_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return outcome


def evaluate_all(root: Path, out_dir: Path, console: Console) -> list[Row]:
    """Every scenario under ``root``; prints and writes the one-row-per-set table."""
    if not console.is_terminal:
        # A log or a pipe gets whole lines and the table unsqueezed.
        console.width = max(console.width, WIDE_OUTPUT)
    scenarios = find_scenarios(root)
    if not scenarios:
        raise FileNotFoundError(f"no scenario (a directory holding events.jsonl) under {root}")
    outcomes = []
    for number, scenario_dir in enumerate(scenarios, start=1):
        relative = scenario_dir.relative_to(root).as_posix()
        name = scenario_dir.name if relative == "." else relative
        outcome = evaluate(scenario_dir, out_dir / relative, console, name)
        outcomes.append(outcome)
        f1 = outcome.scores.pairwise_f1 if outcome.scores else None
        console.print(
            f"[{number}/{len(scenarios)}] {name}: {outcome.events} events -> "
            f"{outcome.groups} groups in {outcome.replay_seconds:.1f} s"
            + (f", pairwise F1 {f1:.3f}" if f1 is not None else "")
            + (
                f"; {outcome.analysis_behind} groups' analysis behind"
                if outcome.analysis_behind
                else ""
            ),
            markup=False,
        )
    table_rows = rows(outcomes)
    rendered = table(table_rows, title=escape(f"evaluation of {root}"))
    console.print(rendered)
    write_results(outcomes, table_rows, out_dir)
    console.print(
        f"answers and metrics under {out_dir}/; the table in {out_dir}/results.md", markup=False
    )
    return table_rows


def evaluate_one(scenario_dir: Path, out_dir: Path, console: Console) -> Outcome:
    """``corrmesh eval``: one scenario, its metrics printed."""
    outcome = evaluate(scenario_dir, out_dir, console)
    print_outcome(outcome, console)
    console.print(
        f"answer written to {out_dir}/ (assignments.jsonl, groups.jsonl, metrics.json)",
        markup=False,
    )
    return outcome
