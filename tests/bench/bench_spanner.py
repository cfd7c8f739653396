"""Spanner latency against the real peers, and dedup throughput.

``python -m tests.bench.bench_spanner``: the C-FIND latency (median of N) of each
source alone, of the three in sequence, and through the spanner's gRPC Query,
plus the time to fold 100,000 matches. Target: spanner <= 1.2 x slowest + 5 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from pydicom import Dataset

from corrmesh.spanner import dimse
from corrmesh.spanner.dedup import Deduplicator
from corrmesh.v1 import spanner_pb2 as pb
from tests.support.dicom_data import corpus
from tests.support.dicom_peers import load_dimse, load_orthanc, running_peers
from tests.support.spanner import identifier, run_query, span_peers, spanner_client

ROUNDS = 30
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _ident() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ds.PatientID = ds.PatientName = ""
    return ds


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def dedup_seconds(total: int = 100_000) -> float:
    """Folds ``total`` matches from three sources, a third of them duplicates."""
    matches = []
    for i in range(total):
        ds = Dataset()
        ds.StudyInstanceUID = f"1.2.3.{i % (total * 2 // 3)}"
        ds.PatientID = f"P{i}"
        matches.append(ds)
    started = time.perf_counter()
    dedup = Deduplicator(pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE)
    for i, ds in enumerate(matches):
        dedup.add(str(ds.StudyInstanceUID), ds, f"n{i % 3}", i % 3)
    dedup.results()
    return time.perf_counter() - started


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_peers(Path(tmp)) as peers:
        data = corpus()
        load_orthanc(peers.orthanc_a, data["a"])
        load_orthanc(peers.orthanc_b, data["b"])
        load_dimse(peers.dcmqrscp, data["c"])
        alone: dict[str, float] = {}
        for peer in peers.all:
            remote = dimse.Remote(peer.ae_title, "127.0.0.1", peer.port)
            samples = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                dimse.find(remote, "BENCH", STUDY_ROOT_FIND, _ident(), 10, threading.Event())
                samples.append(time.perf_counter() - t)
            alone[peer.name] = median_ms(samples)
        sequence = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            for peer in peers.all:
                remote = dimse.Remote(peer.ae_title, "127.0.0.1", peer.port)
                dimse.find(remote, "BENCH", STUDY_ROOT_FIND, _ident(), 10, threading.Event())
            sequence.append(time.perf_counter() - t)
        async with spanner_client(f"sqlite:///{tmp}/bench.db") as stub:
            config_id, _ = await span_peers(stub, peers)
            keys = identifier(StudyInstanceUID="", PatientID="", PatientName="")
            spanned = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, keys)
                spanned.append(time.perf_counter() - t)
    slowest = max(alone.values())
    for name, ms in alone.items():
        print(f"{name:12s} alone      {ms:7.1f} ms")
    print(f"{'3 in sequence':23s} {median_ms(sequence):7.1f} ms")
    through = median_ms(spanned)
    print(f"{'spanner gRPC Query':23s} {through:7.1f} ms  (target <= {1.2 * slowest + 5:.1f} ms)")
    print(f"dedup of 100,000 matches {dedup_seconds():.3f} s (target < 1 s)")


if __name__ == "__main__":
    asyncio.run(main())
