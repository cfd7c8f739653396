"""``make bench``: throughput of the mesh beside a bare gRPC baseline, in one run.

Mesh path: Publish (batches) -> Ingest's durable log -> Subscribe -> Correlation
(analysed, groups committed with the consumer offset). The stream is the one of
the in-process "10k events active" row (incidents of 4 events, 10,000 events in
the 300 s window), the condition the mesh target is set for; the events that
fill the window go through first, unmeasured. The rate is the measured events
divided by the time from their first Publish until Correlation's committed
offset reaches the last of them.

Baseline: the same PublishRequest messages, sent the same way to a server in
its own process that only counts them.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from corrmesh.cli.mesh import Mesh, free_port
from corrmesh.runtime.server import MAX_MESSAGE_BYTES
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, ingest_pb2
from tests.bench import bench_correlation, bench_ingest_edges, bench_spanner, bench_topology_kube
from tests.bench.bare_server import METHOD

#: The cheap view: the full one counts every stored group, member and edge.
_PROGRESS = correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def make_batches(
    first: int, total: int, batch_size: int, active: int
) -> list[ingest_pb2.PublishRequest]:
    """Events ``first`` .. ``first + total`` of the in-process "10k events active"
    stream (:func:`bench_correlation.active_events`), in PublishRequests."""
    events = bench_correlation.active_events(first, total, active)
    return [
        ingest_pb2.PublishRequest(events=events[start : start + batch_size])
        for start in range(0, total, batch_size)
    ]


async def send_all(
    address: str, method: str, batches: list[ingest_pb2.PublishRequest], concurrency: int
) -> float:
    """Sends every batch with ``concurrency`` calls in flight; returns seconds taken."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=ingest_pb2.PublishRequest.SerializeToString,
            response_deserializer=ingest_pb2.PublishResponse.FromString,
        )
        await channel.channel_ready()
        queue = list(reversed(batches))
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                reply = await call(queue.pop())
                assert reply.rejected_count == 0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def wait_consumed(address: str, sequence: int, timeout: float) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = correlation_pb2_grpc.CorrelationServiceStub(channel)
        deadline = time.monotonic() + timeout
        while (await stub.GetStats(_PROGRESS)).consumer_sequence < sequence:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Correlation did not reach sequence {sequence}")
            await asyncio.sleep(0.05)


async def measure_mesh(
    mesh: Mesh,
    warm_up: list[ingest_pb2.PublishRequest],
    batches: list[ingest_pb2.PublishRequest],
    concurrency: int,
) -> tuple[float, float]:
    """(seconds until all acknowledged, seconds until Correlation committed all),
    once ``warm_up`` has filled Correlation's window."""
    publish = "/corrmesh.v1.IngestService/Publish"
    before = sum(len(b.events) for b in warm_up)
    await send_all(mesh.address("ingest"), publish, warm_up, concurrency)
    await wait_consumed(mesh.address("correlation"), before, timeout=600)
    total = before + sum(len(b.events) for b in batches)
    started = time.perf_counter()
    acked = await send_all(mesh.address("ingest"), publish, batches, concurrency)
    await wait_consumed(mesh.address("correlation"), total, timeout=600)
    return acked, time.perf_counter() - started


def run_baseline(batches: list[ingest_pb2.PublishRequest], concurrency: int) -> float:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.bench.bare_server", str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                break
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise
        return asyncio.run(send_all(f"127.0.0.1:{port}", METHOD, batches, concurrency))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--active", type=int, default=10_000, help="events in the window")
    bench_ingest_edges.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smaller in-process runs")
    args = parser.parse_args()
    console = Console(width=160)
    bench_correlation.run(console, quick=args.quick)
    warm_up = make_batches(0, args.active + 2000, args.batch, args.active)
    batches = make_batches(args.active + 2000, args.events, args.batch, args.active)
    size = batches[0].events[0].ByteSize()
    console.print(
        f"{args.events} events ({size} bytes each) in batches of {args.batch}, "
        f"{args.concurrency} calls in flight, after {args.active + 2000} that fill the"
        f" window ({args.active} events active, as in the in-process row)"
    )

    baseline = run_baseline(batches, args.concurrency)
    with (
        tempfile.TemporaryDirectory(prefix="corrmesh-bench-") as var_dir,
        Mesh.on_free_ports(Path(var_dir)) as mesh,
    ):
        acked, consumed = asyncio.run(measure_mesh(mesh, warm_up, batches, args.concurrency))

    table = Table(title="corrmesh bench: Publish -> log -> Subscribe -> Correlation")
    for column in ("path", "seconds", "events/s", "ratio to bare stream"):
        table.add_column(column, justify="right")
    rows = (
        ("bare gRPC (same messages, no work)", baseline),
        ("Publish acknowledged (durable in log)", acked),
        ("through Correlation (offset committed)", consumed),
    )
    base_rate = args.events / baseline
    for label, seconds in rows:
        rate = args.events / seconds
        table.add_row(label, f"{seconds:.2f}", f"{rate:,.0f}", f"{rate / base_rate:.3f}")
    console.print(table)
    bench_spanner.run(console)
    bench_ingest_edges.run_from_args(console, args)
    bench_topology_kube.run(console)


if __name__ == "__main__":
    main()
