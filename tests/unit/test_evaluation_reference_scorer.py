"""Our scorer and the scenario sets' reference scorer agree on real scenarios.

The answer is synthetic but built to exercise every rule: incidents split and
merged, noise pulled into incident groups, events left ungrouped or without a
line, and candidates naming the root cause by id, bare name, alternative,
service or a sibling resource, at various ranks.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from corrmesh.evaluation.answer import read_answer
from corrmesh.evaluation.scenario import bare_name, load_scenario, load_truth
from corrmesh.evaluation.scoring import score
from tests.support.evaluation import write_answer_files

#: Where the scenario sets live: CORRMESH_EVAL_DIR, else the shared folder beside
#: the checkout, else this machine's shared folder (a clone elsewhere, as in CI).
EVAL_CANDIDATES = [
    Path(path)
    for path in (
        os.environ.get("CORRMESH_EVAL_DIR", ""),
        Path(__file__).resolve().parents[3] / "shared" / "eval",
        "/work/shared/eval",
    )
    if str(path)
]
EVAL_DIR = next((p for p in EVAL_CANDIDATES if (p / "score.py").exists()), EVAL_CANDIDATES[0])
REFERENCE = EVAL_DIR / "score.py"
#: Between them: noise, services, nodes without a service, alternatives, many incidents.
SCENARIOS = ("k8s-boutique-s1", "tvdiag-hotel", "camera-site-s1")
#: Keys only the reference prints.
REFERENCE_ONLY = {"scenario", "pairs", "input_problems"}


def _reference_or_skip() -> Path:
    if REFERENCE.exists():
        return REFERENCE
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the reference scorer is required in CI and is missing at {REFERENCE}")
    pytest.skip(f"no scenario sets at {EVAL_DIR}")


def synthetic_answer(scenario_dir: Path, out: Path, seed: int) -> None:
    """A plausible, imperfect answer for the scenario's truth (for the cross-check only)."""
    rng = random.Random(seed)
    scenario, truth = load_scenario(scenario_dir), load_truth(scenario_dir)
    resources = sorted({e.resource_id for e in scenario.events})
    service_of = {e.resource_id: e.service for e in scenario.events if e.service}
    assignments: dict[str, str | None] = {}
    candidates: dict[str, list[str]] = {}
    previous = ""
    for number, inc in enumerate(truth.incidents):
        group = f"g{number}"
        # Some incidents join the previous incident's group, some are split in two.
        if previous and rng.random() < 0.15:
            group = previous
        spill = f"g{number}-b" if rng.random() < 0.2 else group
        for event_id in inc.event_ids:
            roll = rng.random()
            if roll < 0.05:
                continue  # no line at all
            if roll < 0.1:
                assignments[event_id] = None
            else:
                assignments[event_id] = spill if rng.random() < 0.3 else group
        same_service = [r for r, s in service_of.items() if s == inc.root_cause_service]
        pool = [
            inc.root_cause,
            bare_name(inc.root_cause),
            *inc.alternatives,
            inc.root_cause_service or rng.choice(resources),
            rng.choice(same_service) if same_service else rng.choice(resources),
            rng.choice(resources),
            rng.choice(resources),
        ]
        for name in {group, spill}:
            candidates[name] = rng.sample(pool, k=rng.randint(0, 4))
        previous = group
    noise = list(truth.noise)
    for event_id in noise:
        roll = rng.random()
        if roll < 0.3 and candidates:
            assignments[event_id] = rng.choice(sorted(candidates))
        elif roll < 0.5:
            assignments[event_id] = f"n-{rng.randrange(len(noise) // 4 + 1)}"
        elif roll < 0.8:
            assignments[event_id] = None
    order = [e.event_id for e in scenario.events if e.event_id in assignments]
    rng.shuffle(order)  # line order must not matter
    write_answer_files(out, [(e, assignments[e]) for e in order], candidates)


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("seed", [1, 2])
def test_same_numbers_as_the_reference_scorer(tmp_path: Path, name: str, seed: int) -> None:
    reference = _reference_or_skip()
    scenario_dir = EVAL_DIR / "scenarios" / name
    answer_dir = tmp_path / "answer"
    synthetic_answer(scenario_dir, answer_dir, seed)

    ran = subprocess.run(
        [sys.executable, str(reference), str(scenario_dir), str(answer_dir), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    expected = json.loads(ran.stdout)
    ours = score(load_scenario(scenario_dir), load_truth(scenario_dir), read_answer(answer_dir))

    got = ours.as_dict()
    assert set(expected) - REFERENCE_ONLY == set(got)
    for key, value in got.items():
        assert value == pytest.approx(expected[key], abs=1e-12), key
    # The answer is imperfect in every respect the metrics look at.
    assert 0 < got["pairwise_f1"] < 1 and 0 < got["incidents_split"] < 1
    assert got["coverage"] < 1 and 0 < got["rc_top1_strict"] < got["rc_top3_service"] < 1
