"""The ``corrmesh`` command: serve one service, bring the whole mesh up, run the demo,
evaluate the mesh on labelled scenarios."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import threading
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corrmesh.cli.demo import print_groups, run_scenario
from corrmesh.cli.mesh import Mesh
from corrmesh.evaluation.runner import evaluate_all, evaluate_one
from corrmesh.runtime.settings import (
    INGEST_DICOM_AE_TITLE,
    INGEST_DICOM_PORT,
    INGEST_WEBHOOK_PORT,
    SERVICES,
    SPANNER_DICOM_AE_TITLE,
    SPANNER_DICOM_PORT,
    SPANNER_DICOMWEB_PORT,
    default_address,
)

EXTRA_LISTENERS = {
    "ingest": f"DICOM C-STORE :{INGEST_DICOM_PORT} (AE {INGEST_DICOM_AE_TITLE}), "
    f"webhooks :{INGEST_WEBHOOK_PORT}",
    "spanner": f"DICOM :{SPANNER_DICOM_PORT} (AE {SPANNER_DICOM_AE_TITLE}), "
    f"DICOMweb :{SPANNER_DICOMWEB_PORT}",
}


def serve(service: str, argv: list[str]) -> None:
    """Runs one service in this process (same as ``python -m corrmesh.<service>``)."""
    module = importlib.import_module(f"corrmesh.{service}.server")
    module.main(argv)


def _print_listeners(mesh: Mesh, console: Console) -> None:
    table = Table(title="corrmesh is up")
    for column in ("service", "gRPC", "other listeners", "log"):
        table.add_column(column)
    for service in SERVICES:
        table.add_row(
            service,
            mesh.address(service),
            EXTRA_LISTENERS.get(service, ""),
            str(mesh.var_dir / f"{service}.log"),
        )
    console.print(table)


def up(var_dir: Path, demo: bool, console: Console) -> int:
    """Starts all four services, optionally runs the demo, and waits for Ctrl-C."""
    mesh = Mesh.on_default_ports(var_dir)
    console.print(f"starting Topology, Ingest, Spanner and Correlation (state in {var_dir}/)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mesh.start()
    try:
        _print_listeners(mesh, console)
        if demo:
            groups = asyncio.run(
                run_scenario(
                    mesh.address("ingest"),
                    mesh.address("correlation"),
                    mesh.address("topology"),
                    console,
                )
            )
            print_groups(groups, console)
        console.print("press Ctrl-C to stop")
        while not stop.wait(0.5):
            dead = [s for s, p in mesh.processes.items() if p.process.poll() is not None]
            if dead:
                console.print(f"[red]{', '.join(dead)} stopped unexpectedly[/red]")
                for service in dead:
                    console.print(mesh.log_tail(service))
                return 1
        return 0
    finally:
        console.print("stopping")
        codes = mesh.stop()
        console.print("stopped: " + ", ".join(f"{s} ({c})" for s, c in codes.items()))


def demo(ingest: str, correlation: str, topology: str, console: Console) -> int:
    groups = asyncio.run(run_scenario(ingest, correlation, topology, console))
    print_groups(groups, console)
    return 0


def _stop_on_sigterm(*_: object) -> None:
    # Unwinds like Ctrl-C, so the evaluation's mesh is stopped on the way out.
    raise KeyboardInterrupt


def evaluation(path: Path, out: Path, every: bool, console: Console) -> int:
    """``corrmesh eval`` and ``eval-all``: one scenario, or every scenario under a root."""
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        if every:
            evaluate_all(path, out, console)
        else:
            evaluate_one(path, out, console)
    except KeyboardInterrupt:
        console.print("interrupted; the evaluation mesh was stopped")
        return 130
    except (grpc.RpcError, RuntimeError, OSError, ValueError) as exc:
        # RuntimeError covers a mesh that does not start and a replay the mesh refused.
        console.print(f"[red]evaluation failed:[/red] {escape(str(exc))}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="corrmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run one service", add_help=False)
    serve_parser.add_argument("service", choices=SERVICES)
    up_parser = commands.add_parser("up", help="run all four services locally")
    up_parser.add_argument("--var-dir", type=Path, default=Path("var"))
    up_parser.add_argument("--demo", action="store_true", help="publish the demo scenario")
    demo_parser = commands.add_parser("demo", help="publish the demo scenario into a mesh")
    for service in ("ingest", "correlation", "topology"):
        demo_parser.add_argument(f"--{service}", default=default_address(service))
    eval_parser = commands.add_parser(
        "eval", help="replay a labelled scenario through a fresh mesh and score it"
    )
    eval_parser.add_argument("scenario", type=Path, help="scenario directory (or root with --all)")
    eval_parser.add_argument("--out", type=Path, required=True, help="where the answer goes")
    eval_parser.add_argument("--all", action="store_true", help="every scenario under the root")
    eval_all_parser = commands.add_parser(
        "eval-all", help="evaluate every scenario under a root and print one row per set"
    )
    eval_all_parser.add_argument("scenario", type=Path, help="root of the scenario sets")
    eval_all_parser.add_argument("--out", type=Path, required=True, help="where answers go")

    if argv[:1] == ["serve"]:
        args, rest = parser.parse_known_args(argv)
        serve(args.service, rest)
        return
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "up":
        sys.exit(up(args.var_dir, args.demo, console))
    if args.command == "demo":
        sys.exit(demo(args.ingest, args.correlation, args.topology, console))
    if args.command in ("eval", "eval-all"):
        every = args.command == "eval-all" or args.all
        sys.exit(evaluation(args.scenario, args.out, every, console))


if __name__ == "__main__":
    main()
