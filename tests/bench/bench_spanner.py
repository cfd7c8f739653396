"""Spanner latency against the real peers, and dedup throughput, in one run.

``python -m tests.bench.bench_spanner`` (also part of ``make bench``): the median
C-FIND latency of each source alone, of the three in sequence, and through a
Spanner running as its own process (``python -m corrmesh.spanner``, as deployed)
by each of its doors: gRPC ``Query``, a C-FIND to its spanning DIMSE SCP, and
QIDO-RS ``/studies``. Every spanner figure is given as a ratio to the slowest
source alone, measured in the same run; the target is at most 1.2 x slowest +
5 ms. "Alone" is measured two ways, both printed: until the answer is complete
(the final C-FIND status; the spanner's own client releases its associations
after that, off the answer's path) and the full exchange a client querying the
source alone goes through (associate, C-FIND, release, until the A-RELEASE-RP
arrives). The spanning SCP is measured both ways too, by the same client code as
the sources, and each of its figures is judged against the slowest source
measured the same way. Then the time to fold 100,000 matches with each dedup
strategy (target: under 1 s).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from pydicom import Dataset
from pynetdicom import AE, evt
from rich.console import Console
from rich.table import Table

from corrmesh.cli.mesh import Mesh, free_port
from corrmesh.spanner import dimse
from corrmesh.spanner.datasets import dedup_key
from corrmesh.spanner.dedup import Deduplicator
from corrmesh.v1 import spanner_pb2 as pb
from corrmesh.v1 import spanner_pb2_grpc
from tests.support.dicom_data import corpus
from tests.support.dicom_peers import Peers, load_dimse, load_orthanc, running_peers
from tests.support.spanner import identifier, run_query, span_peers

ROUNDS = 30
WARMUP = 3
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
DEDUP_MATCHES = 100_000
SCP_ANSWER = "spanning SCP, C-FIND answer"
SCP_EXCHANGE = "spanning SCP, full exchange"
#: Doors a DICOM client uses exactly as it uses a source: judged like for like.
LIKE_FOR_LIKE = {SCP_ANSWER: "answer", SCP_EXCHANGE: "full"}


def _study_keys() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ds.PatientID = ds.PatientName = ""
    return ds


def c_find(ae_title: str, port: int) -> Callable[[], object]:
    """One STUDY-level C-FIND by the spanner's own DIMSE client (TCP_NODELAY on),
    done when the answer is complete."""
    remote = dimse.Remote(ae_title, "127.0.0.1", port)
    return lambda: dimse.find(
        remote, "BENCH", STUDY_ROOT_FIND, _study_keys(), 10, threading.Event()
    )


def c_find_exchange(ae_title: str, port: int) -> Callable[[], float]:
    """The same C-FIND as one full exchange: associate, find, release. Returns the
    seconds until the A-RELEASE-RP arrived, which ends the exchange with the peer:
    pynetdicom's ``release()`` returns only after its own threads have wound down
    (``Association.kill()`` looks again every 10 ms), time that belongs to this
    client, not to the peer, and comes in 10 ms steps."""
    remote = dimse.Remote(ae_title, "127.0.0.1", port)

    def exchange() -> float:
        released: list[float] = []
        started = time.perf_counter()
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(STUDY_ROOT_FIND)
        on_released = (evt.EVT_RELEASED, lambda _event: released.append(time.perf_counter()))
        assoc = dimse.associate(ae, remote, 10, [on_released])
        try:
            statuses = [int(s.Status) for s, _ in assoc.send_c_find(_study_keys(), STUDY_ROOT_FIND)]
            assert statuses[-1] == 0x0000, statuses
        finally:
            assoc.release()
        return (released[0] if released else time.perf_counter()) - started

    return exchange


async def median_ms(call: Callable[[], Awaitable[object]]) -> float:
    """The median time of ``call`` over ROUNDS, after WARMUP unmeasured calls: the
    seconds it returns when it measures itself, else its wall time."""
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        measured = await call()
        elapsed = time.perf_counter() - started
        samples.append(measured if isinstance(measured, float) else elapsed)
    return statistics.median(samples) * 1000


def blocking(work: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    return lambda: asyncio.to_thread(work)


def dedup_seconds(strategy: int, total: int = DEDUP_MATCHES) -> float:
    """Folds ``total`` decoded matches from three sources, a third of them
    duplicates (so a third of the keys collide): key extraction, add and fold,
    as the engine does per query."""
    matches = []
    for i in range(total):
        ds = Dataset()
        ds.StudyInstanceUID = f"1.2.3.{i % (total * 2 // 3)}"
        ds.PatientID = f"P{i}"
        if i % 2:
            ds.StudyDescription = f"description {i}"
        matches.append(ds)
    gc.collect()  # the inputs' own garbage is not the fold's cost
    started = time.perf_counter()
    dedup = Deduplicator(strategy)
    for i, ds in enumerate(matches):
        dedup.add(dedup_key(ds, pb.QUERY_LEVEL_STUDY), ds, f"n{i % 3}", i % 3)
    folded = list(dedup.results())
    elapsed = time.perf_counter() - started
    assert len(folded) == total * 2 // 3
    return elapsed


async def through_spanner(peers: Peers, var_dir: Path) -> dict[str, float]:
    """Median latency of each door of a Spanner process over the three peers."""
    web_port = free_port()
    mesh = Mesh.on_free_ports(
        var_dir,
        env={
            "CORRMESH_SPANNER_DICOM_PORT": str(peers.spanner_port),
            "CORRMESH_SPANNER_DICOMWEB_PORT": str(web_port),
            "CORRMESH_SPANNER_START_LISTENERS": "true",
        },
    )
    mesh.var_dir.mkdir(parents=True, exist_ok=True)
    mesh.start_service("spanner")
    try:
        await asyncio.to_thread(mesh.wait_serving, 60.0, ("spanner",))
        async with grpc.aio.insecure_channel(mesh.address("spanner")) as channel:
            stub = spanner_pb2_grpc.SpannerServiceStub(channel)
            config_id, _ = await span_peers(stub, peers)
            keys = identifier(StudyInstanceUID="", PatientID="", PatientName="")
            out = {
                "gRPC Query": await median_ms(
                    lambda: run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, keys)
                )
            }
        scp = (peers.spanner_ae, peers.spanner_port)
        out[SCP_ANSWER] = await median_ms(blocking(c_find(*scp)))
        out[SCP_EXCHANGE] = await median_ms(blocking(c_find_exchange(*scp)))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client:

            async def qido() -> None:
                answer = await client.get("/studies", params={"includefield": "PatientName"})
                assert answer.status_code == 200, answer.text

            out["QIDO-RS /studies"] = await median_ms(qido)
        return out
    finally:
        mesh.stop_service("spanner")


async def qido_alone(peers: Peers) -> dict[str, float]:
    """QIDO-RS /studies straight at each Orthanc (for reference)."""
    out = {}
    async with httpx.AsyncClient() as client:
        for peer in (peers.orthanc_a, peers.orthanc_b):

            async def qido(url: str = peer.dicomweb_url) -> None:
                (await client.get(url + "/studies")).raise_for_status()

            out[peer.name] = await median_ms(qido)
    return out


async def measure(console: Console) -> None:
    # The client logs as the Spanner's own does (not at all): pynetdicom's logging
    # handlers cost the client time per match, which would weigh on the spanner's
    # answer (the union of the sources) more than on any one source's.
    dimse.quiet_pynetdicom()
    with tempfile.TemporaryDirectory(prefix="corrmesh-bench-") as tmp:
        root = Path(tmp)
        with running_peers(root / "peers") as peers:
            data = corpus()
            load_orthanc(peers.orthanc_a, data["a"])
            load_orthanc(peers.orthanc_b, data["b"])
            load_dimse(peers.dcmqrscp, data["c"])
            finds = {p.name: c_find(p.ae_title, p.port) for p in peers.all}
            alone = {name: await median_ms(blocking(find)) for name, find in finds.items()}
            exchanges = {p.name: c_find_exchange(p.ae_title, p.port) for p in peers.all}
            full = {name: await median_ms(blocking(ex)) for name, ex in exchanges.items()}

            def in_sequence() -> float:
                return sum(exchange() for exchange in exchanges.values())

            sequence = await median_ms(blocking(in_sequence))
            web_alone = await qido_alone(peers)
            spanned = await through_spanner(peers, root / "var")

    slowest, slowest_full = max(alone.values()), max(full.values())
    target, target_full = 1.2 * slowest + 5, 1.2 * slowest_full + 5
    table = Table(title=f"corrmesh bench: Spanner over 3 real peers (median of {ROUNDS})")
    for column in ("path", "ms", "x slowest (answer)", "x slowest (full)"):
        table.add_column(column, justify="right")

    def row(label: str, ms: float) -> None:
        table.add_row(label, f"{ms:.1f}", f"{ms / slowest:.2f}", f"{ms / slowest_full:.2f}")

    for name in alone:
        row(f"{name} alone: C-FIND answer", alone[name])
        row(f"{name} alone: full exchange", full[name])
    for name, ms in web_alone.items():
        row(f"{name} alone: QIDO-RS", ms)
    row("3 in sequence (full exchanges)", sequence)
    for door, ms in spanned.items():
        row(f"spanner: {door}", ms)
    console.print(table)
    for door, ms in spanned.items():
        basis = LIKE_FOR_LIKE.get(door)
        verdicts = [
            f"vs {kind} slowest <= {limit:.1f} ms ({'ok' if ms <= limit else 'MISSED'})"
            for kind, key, limit in (
                ("answer-only", "answer", target),
                ("full-exchange", "full", target_full),
            )
            if basis in (None, key)
        ]
        console.print(f"spanner {door}: {ms:.1f} ms; target " + ", ".join(verdicts))

    table = Table(title=f"corrmesh bench: dedup of {DEDUP_MATCHES:,} matches")
    for column in ("strategy", "seconds", "target"):
        table.add_column(column, justify="right")
    for strategy in (
        pb.DEDUPLICATION_STRATEGY_FIRST_WINS,
        pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE,
        pb.DEDUPLICATION_STRATEGY_MERGE_ALL,
    ):
        seconds = statistics.median(dedup_seconds(strategy) for _ in range(3))
        verdict = "ok" if seconds < 1 else "MISSED"
        name = pb.DeduplicationStrategy.Name(strategy).removeprefix("DEDUPLICATION_STRATEGY_")
        table.add_row(name, f"{seconds:.3f}", f"< 1 s ({verdict})")
    console.print(table)


def run(console: Console | None = None) -> None:
    """The Spanner part of ``make bench``."""
    asyncio.run(measure(console or Console()))


if __name__ == "__main__":
    run()
