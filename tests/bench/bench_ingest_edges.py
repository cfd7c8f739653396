"""Edge throughput beside bare receivers measured in the same run (part of ``make bench``).

DICOM: ``storescu`` processes (dcmtk, ``TCP_NODELAY=1``), several associations
at once, send the same generated instances to a bare pynetdicom SCP that
only answers success, then to Ingest's SCP, where each instance's identifiers
are read, the instance is written to the folder (fsync) and recorded as
RECEIVED and STORED events durable in the log before the response. Rate:
instances per second from the first storescu start to the last exit.

Webhook: the same Alertmanager v4 notifications posted with a fixed number
in flight to a bare uvicorn/Starlette receiver, then to Ingest's webhook,
which answers after its events are durable. Rate: alerts per second.

Beside each rate: the receiving process's CPU time per item (user + system,
from /proc), steadier than the rates on a machine shared with other work.

Standalone: ``.venv/bin/python -m tests.bench.bench_ingest_edges``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from pydicom import dcmread
from rich.console import Console
from rich.table import Table

from corrmesh.cli.mesh import Mesh, free_port
from corrmesh.ingest.webhooks import ALERTMANAGER_PATH
from corrmesh.v1 import ingest_pb2, ingest_pb2_grpc
from tests.support.dicom_peers import wait_for_port
from tests.support.ingest import all_events, storescu, write_study

ROOT = "1.2.826.0.1.3680043.10.1201.99"


def make_instances(folder: Path, count: int, senders: int) -> list[list[Path]]:
    """``count`` 64x64 16-bit instances (~9 KB) in one study per sender."""
    per_sender = []
    for sender in range(senders):
        paths = write_study(
            folder / f"s{sender}", f"{ROOT}.{sender + 1}", count // senders, f"P{sender}", "B^N", 4
        )
        for path in paths:
            _add_pixels(path)
        per_sender.append(paths)
    return per_sender


def _add_pixels(path: Path) -> None:
    ds = dcmread(path)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OW", bytes(range(256)) * 32)  # Pixel Data: 64 x 64 x 2 bytes
    ds.save_as(path, enforce_file_format=True)


async def send_dicom(port: int, batches: list[list[Path]]) -> float:
    """Seconds for every batch to go through its own storescu association, all at once."""
    started = time.perf_counter()
    runs = await asyncio.gather(*(storescu(port, files) for files in batches))
    elapsed = time.perf_counter() - started
    failed = [run.output[-500:] for run in runs if run.returncode != 0]
    if failed:
        raise RuntimeError(f"storescu failed: {failed}")
    return elapsed


def notifications(count: int, alerts_per: int) -> list[bytes]:
    """Alertmanager v4 bodies, each with ``alerts_per`` distinct firing alerts."""
    bodies = []
    for n in range(count):
        alerts = [
            {
                "status": "firing",
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "namespace": "load",
                    "pod": f"app-{n}-{a}",
                    "severity": "warning",
                },
                "annotations": {"summary": "Pod is crash looping."},
                "startsAt": "2026-11-21T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": f"{n:08x}{a:08x}",
            }
            for a in range(alerts_per)
        ]
        payload = {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="KubePodCrashLooping", n="{n}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "corrmesh",
            "groupLabels": {"alertname": "KubePodCrashLooping"},
            "commonLabels": {"alertname": "KubePodCrashLooping"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
        bodies.append(json.dumps(payload).encode())
    return bodies


async def post_all(port: int, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to post every body with ``concurrency`` requests in flight."""
    url = f"http://127.0.0.1:{port}{ALERTMANAGER_PATH}"
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await client.post(url, content=bodies[0], headers={"content-type": "application/json"})
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                response = await client.post(
                    url, content=queue.pop(), headers={"content-type": "application/json"}
                )
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (NaN where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, send: Coroutine[Any, Any, float]) -> tuple[float, float]:
    """(seconds the send took, CPU seconds process ``pid`` spent meanwhile)."""
    before = cpu_seconds(pid)
    seconds = asyncio.run(send)
    return seconds, cpu_seconds(pid) - before


@contextmanager
def bare(kind: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a bare receiver of ``kind``."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.bench.bare_edges", kind, str(port)])
    try:
        wait_for_port(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def ingest(var_dir: Path) -> Iterator[tuple[Mesh, int, int]]:
    """Ingest alone, as ``python -m corrmesh.ingest``, with its edges on free ports.

    Yields (mesh, C-STORE port, webhook port).
    """
    mesh = Mesh.on_free_ports(var_dir, {"OTEL_TRACES_EXPORTER": "none"})
    dicom = int(mesh.env["CORRMESH_INGEST_DICOM_PORT"])
    webhook = int(mesh.env["CORRMESH_INGEST_WEBHOOK_PORT"])
    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        mesh.start_service("ingest")
        mesh.wait_serving(services=("ingest",))
        yield mesh, dicom, webhook
    finally:
        mesh.stop()


async def count_events(address: str, event_type: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        only = ingest_pb2.EventFilter(types=[event_type])
        return len(await all_events(stub, only))


def run(console: Console, instances: int, senders: int, posts: int, alerts_per: int) -> None:
    """Measures both edges and their baselines; prints one table."""
    os.environ.setdefault("TCP_NODELAY", "1")
    with tempfile.TemporaryDirectory(prefix="corrmesh-edge-bench-") as tmp:
        root = Path(tmp)
        batches = make_instances(root / "files", instances, senders)
        total = sum(len(b) for b in batches)
        bodies = notifications(posts, alerts_per)
        alerts = posts * alerts_per
        with bare("dicom") as (port, pid):
            asyncio.run(send_dicom(port, [b[:5] for b in batches]))  # warm-up
            bare_dicom = measured(pid, send_dicom(port, batches))
        with bare("webhook") as (port, pid):
            bare_hook = measured(pid, post_all(port, bodies, concurrency=senders * 2))
        with ingest(root / "var") as (mesh, dicom_port, webhook_port):
            pid = mesh.processes["ingest"].process.pid
            asyncio.run(send_dicom(dicom_port, [b[:5] for b in batches]))  # warm-up
            edge_dicom = measured(pid, send_dicom(dicom_port, batches))
            edge_hook = measured(pid, post_all(webhook_port, bodies, concurrency=senders * 2))
            stored = asyncio.run(count_events(mesh.address("ingest"), "STORED"))
            firing = asyncio.run(count_events(mesh.address("ingest"), "KubePodCrashLooping"))
        if stored < total or firing != alerts:
            raise RuntimeError(f"log holds {stored}/{total} stored, {firing}/{alerts} alerts")
    rows = [
        ("C-STORE, bare SCP", total, bare_dicom, bare_dicom[0]),
        ("C-STORE, Ingest", total, edge_dicom, bare_dicom[0]),
        ("webhook, bare", alerts, bare_hook, bare_hook[0]),
        ("webhook, Ingest", alerts, edge_hook, bare_hook[0]),
    ]
    table = Table(
        title=f"corrmesh bench: edges ({senders} storescu at once; {alerts_per} alerts/post;"
        " Ingest answers once durable)"
    )
    for column in ("path", "items", "seconds", "items/s", "to bare", "CPU ms/item"):
        table.add_column(column, justify="right")
    for label, items, (seconds, cpu), baseline in rows:
        table.add_row(
            label,
            str(items),
            f"{seconds:.2f}",
            f"{items / seconds:,.0f}",
            f"{baseline / seconds:.3f}",
            f"{cpu / items * 1000:.3f}",
        )
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dicom-instances", type=int, default=2000)
    parser.add_argument("--dicom-senders", type=int, default=4)
    parser.add_argument("--webhook-posts", type=int, default=2000)
    parser.add_argument("--alerts-per-post", type=int, default=5)


def run_from_args(console: Console, args: argparse.Namespace) -> None:
    run(console, args.dicom_instances, args.dicom_senders, args.webhook_posts, args.alerts_per_post)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_ingest_edges")
    add_arguments(parser)
    run_from_args(Console(), parser.parse_args())
