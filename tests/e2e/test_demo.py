"""The demo that ``make run`` shows, on its own mesh: what broke, why, what else."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from corrmesh.cli.demo import print_groups, run_scenario
from corrmesh.cli.mesh import Mesh

pytestmark = pytest.mark.e2e


async def test_the_outage_is_one_group_with_mysql_as_its_root_cause(tmp_path: Path) -> None:
    with Mesh.on_free_ports(tmp_path / "mesh") as mesh:
        console = Console(record=True, width=120)
        groups = await run_scenario(
            mesh.address("ingest"),
            mesh.address("correlation"),
            mesh.address("topology"),
            console,
            timeout=60,
        )
        print_groups(groups, console)

    (outage,) = [g for g in groups if any(m.title.startswith("OOMKilled") for m in g.members)]
    types = sorted(m.title.split(":")[0].split(" ")[0] for m in outage.members)
    assert types == ["Back-off", "FrontendErrorRate", "OOMKilled", "Readiness", "Readiness"]
    best = outage.root_cause_candidates[0].resource
    assert (best.kind, best.name) == ("Deployment", "mysql")
    assert outage.pattern.pattern == "cascading_failure"
    assert "api" in outage.impact_summary and "frontend" in outage.impact_summary
    # The person on the car park camera has nothing to do with it.
    assert not any(m.title.startswith("Person") for g in groups for m in g.members)
    shown = console.export_text()
    assert "Root cause: mysql memory exhaustion" in shown
    assert "1 group(s) holding 5 events; 2 on their own" in shown
