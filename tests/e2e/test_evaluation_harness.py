"""``corrmesh eval`` end to end: a tiny scenario with a known answer through a real mesh.

Two bursts of alerts, three hours apart, on two resources that the topology
does not connect: the right answer is two groups, one per burst.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from corrmesh.cli.main import main
from tests.support.evaluation import event, incident, write_scenario

pytestmark = pytest.mark.e2e

ALPHA, BETA = "pod//alpha-0", "pod//beta-0"
IDS = [f"e-{n:06d}" for n in range(1, 8)]


def tiny_scenario(directory: Path) -> Path:
    alpha = [
        event(
            n,
            60 + 5 * (n - 1),
            ALPHA,
            service="alpha",
            title="disk full on alpha-0",
            fingerprint="fp-alpha-disk",
            type_="disk_full",
        )
        for n in range(1, 5)
    ]
    beta = [
        event(
            4 + n,
            3 * 3600 + 5 * (n - 1),
            BETA,
            service="beta",
            title="request latency high on beta-0",
            fingerprint="fp-beta-latency",
            source="trace",
            type_="latency_up",
        )
        for n in range(1, 4)
    ]
    return write_scenario(
        directory,
        alpha + beta,
        nodes=["service//alpha", ALPHA, "service//beta", BETA],
        edges=[("service//alpha", ALPHA, "owns"), ("service//beta", BETA, "owns")],
        incidents=[
            incident(1, ALPHA, IDS[:4], service="alpha"),
            incident(2, BETA, IDS[4:], service="beta"),
        ],
    )


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    return int(ended.value.code or 0)


def _services_under(directory: Path) -> list[int]:
    """Pids of live processes whose CORRMESH_VAR_DIR lies under ``directory``."""
    marker = f"CORRMESH_VAR_DIR={directory}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            found.append(int(proc.name))
    return found


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the harness's temporary mesh state goes, so the test can look after it."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(state))
    return state


def test_eval_writes_the_answer_and_scores_the_known_grouping(
    tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tiny_scenario(tmp_path / "tiny")
    out = tmp_path / "out"

    assert _run(["eval", str(scenario), "--out", str(out)]) == 0

    assignments = [
        json.loads(line) for line in (out / "assignments.jsonl").read_text().splitlines()
    ]
    assert [a["event_id"] for a in assignments] == IDS
    group_of = {a["event_id"]: a["group_id"] for a in assignments}
    assert len({group_of[e] for e in IDS[:4]}) == 1
    assert len({group_of[e] for e in IDS[4:]}) == 1
    assert group_of[IDS[0]] != group_of[IDS[4]] and None not in group_of.values()

    groups = {
        g["group_id"]: g for g in map(json.loads, (out / "groups.jsonl").read_text().splitlines())
    }
    assert set(groups) == {group_of[IDS[0]], group_of[IDS[4]]}
    for group in groups.values():
        assert set(group) == {"group_id", "root_cause_candidates", "pattern"}

    scores = json.loads((out / "metrics.json").read_text())["scores"]
    assert scores["pairwise_precision"] == scores["pairwise_recall"] == 1.0
    assert scores["pairwise_f1"] == scores["ari"] == scores["ari_incident_events"] == 1.0
    assert (scores["alerts_in"], scores["groups_out"]) == (7, 2)
    assert scores["noise_reduction"] == pytest.approx(1 - 2 / 7)
    assert scores["incidents_split"] == scores["groups_mixing_incidents"] == 0.0
    # Each group holds one resource's events: any candidate list the analysis gives
    # must start with that resource; with no analysis there is no candidate at all.
    expected_root = {group_of[IDS[0]]: ALPHA, group_of[IDS[4]]: BETA}
    named = [g for g in groups.values() if g["root_cause_candidates"]]
    for group in named:
        assert group["root_cause_candidates"][0] == expected_root[group["group_id"]]
    assert scores["rc_top1_strict"] == len(named) / 2

    printed = capsys.readouterr().out
    assert "pairwise P / R / F1" in printed and "1.000 / 1.000 / 1.000" in printed
    assert "events/s" in printed
    # The mesh is gone: no service left running, its temporary state removed.
    assert _services_under(state_dir) == []
    assert list(state_dir.iterdir()) == []


def test_eval_all_prints_one_row_per_set_and_writes_the_table(
    tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "scenarios"
    tiny_scenario(root / "pack" / "one")
    out = tmp_path / "out"

    assert _run(["eval-all", str(root), "--out", str(out)]) == 0

    assert (out / "pack" / "one" / "assignments.jsonl").exists()
    results = json.loads((out / "results.json").read_text())
    (row,) = results["sets"]
    assert (row["set"], row["scenarios"], row["pairwise_f1"]) == ("pack", 1, 1.0)
    assert [s["scenario"] for s in results["scenarios"]] == ["pack/one"]
    assert "| pack (mean of 1) | 1.000 | 1.000 | 1.000 |" in (out / "results.md").read_text()
    assert row["mean_over_scenarios"] is True
    assert "pack (mean of 1)" in capsys.readouterr().out
    assert _services_under(state_dir) == []


CAMERA = {
    "camera_id": "front",
    "controller_id": "nvr-1",
    "detection_type": "person",
    "confidence": "7",
}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # Ingest refuses a confidence above 1, naming the field.
        (
            [event(1, 0, "camera/nvr-1/front", domain="camera", attributes=CAMERA)],
            ["e-000001", "camera.confidence"],
        ),
        # A repeated id keeps its first sequence: the log would not be the file's stream.
        (
            [event(1, 0, "pod//a"), event(1, 1, "pod//a")],
            ["e-000001", "not in the scenario's order"],
        ),
    ],
    ids=["refused", "repeated"],
)
def test_a_stream_the_mesh_cannot_replay_fails_the_run_and_stops_the_mesh(
    tmp_path: Path,
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
    events: list[dict],
    expected: list[str],
) -> None:
    scenario = write_scenario(tmp_path / "bad", events)

    assert _run(["eval", str(scenario), "--out", str(tmp_path / "out")]) == 1

    printed = " ".join(capsys.readouterr().out.split())
    assert all(text in printed for text in expected), printed
    assert _services_under(state_dir) == []
    assert list(state_dir.iterdir()) == []
