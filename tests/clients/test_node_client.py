"""A real Node client (@grpc/grpc-js + @grpc/proto-loader, loaded from protos/).

``test_node_client_loads_protos`` needs only node and npm: it proves the
contracts load in proto-loader and both service clients build.
``test_node_client_publishes_and_watches`` runs the client against the running
mesh: it publishes two events sharing a fingerprint to Ingest and waits for
Correlation to stream a group holding both.

Without node or npm these tests skip locally and fail when CI=true.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "publish_and_watch.js"
PINNED = {"@grpc/grpc-js": "1.14.7", "@grpc/proto-loader": "0.8.1"}
NPM_TIMEOUT_S = 300
CLIENT_TIMEOUT_S = 20


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH; the Node client test needs node and npm"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def _installed(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text())["version"])


def _install_dependencies(npm: str) -> None:
    """npm ci (npm install without a lock) when node_modules lacks the pins."""
    lock_path = Path(tempfile.gettempdir()) / "corrmesh-node-client-npm.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (pytest-xdist)
        if all(_installed(pkg) == version for pkg, version in PINNED.items()):
            return
        verb = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
        proc = subprocess.run(
            [npm, verb, "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"npm {verb} failed in {NODE_DIR} (exit {proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """The command that runs the Node client, with its dependencies installed."""
    node = _require_tool("node")
    npm = _require_tool("npm")
    _install_dependencies(npm)
    for package, version in PINNED.items():
        assert _installed(package) == version, f"{package} is not installed at {version}"
    return [node, str(SCRIPT)]


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout, check=False
    )


def _last_json_line(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "the Node client printed nothing on stdout"
    result = json.loads(lines[-1])
    assert isinstance(result, dict), f"expected a JSON object, got {lines[-1]!r}"
    return result


def test_node_client_loads_protos(node_client: list[str]) -> None:
    proc = _run([*node_client, "--check"], timeout=60)
    assert proc.returncode == 0, f"--check failed:\n{proc.stdout}\n{proc.stderr}"
    result = _last_json_line(proc.stdout)
    assert result["ok"] is True
    assert result["grpc_js"] == PINNED["@grpc/grpc-js"]
    assert result["proto_loader"] == PINNED["@grpc/proto-loader"]
    methods = result["methods"]
    assert "Publish" in methods["corrmesh.v1.IngestService"]
    assert "WatchGroups" in methods["corrmesh.v1.CorrelationService"]


@pytest.mark.e2e
def test_node_client_publishes_and_watches(
    node_client: list[str], request: pytest.FixtureRequest
) -> None:
    # Asked for only after node/npm are known to be there, so a machine
    # without them skips before a mesh is started.
    mesh = request.getfixturevalue("mesh")
    command = [
        *node_client,
        "--ingest",
        mesh.address("ingest"),
        "--correlation",
        mesh.address("correlation"),
        "--timeout",
        str(CLIENT_TIMEOUT_S),
    ]
    token = getattr(mesh, "token", None)
    if token:
        command += ["--token", str(token)]

    proc = _run(command, timeout=CLIENT_TIMEOUT_S + 40)

    if proc.returncode != 0:
        logs = ""
        if hasattr(mesh, "log_tail"):
            logs = "".join(
                f"\n--- {service} log ---\n{mesh.log_tail(service)}"
                for service in ("ingest", "correlation")
            )
        pytest.fail(
            f"Node client exited {proc.returncode}:\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}{logs}"
        )
    result = _last_json_line(proc.stdout)
    event_ids = result["event_ids"]
    assert len(event_ids) == 2, result
    assert all(isinstance(e, str) and e for e in event_ids), result
    assert len(set(event_ids)) == 2, f"Ingest gave both events one id: {result}"
    correlation_ids = result["correlation_ids"]
    assert len(correlation_ids) == 2, result
    assert all(isinstance(c, str) and c for c in correlation_ids), result
    assert isinstance(result["group_id"], str) and result["group_id"], result
    members = set(result["member_event_ids"])
    assert set(event_ids) <= members, (
        f"group {result['group_id']} lacks a published event: {result}"
    )
