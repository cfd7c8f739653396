"""Against the real peers: C-CANCEL on the spanning SCP, source health and back-off,
the query-result cache, and source failures and slow sources published to a real
Ingest."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2
from pydicom import Dataset
from pynetdicom import AE

from corrmesh.cli.mesh import free_port
from corrmesh.ingest.server import IngestApp
from corrmesh.spanner.dimse import PENDING
from corrmesh.spanner.health import HealthTracker, TtlCache
from corrmesh.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc
from corrmesh.v1 import spanner_pb2 as pb
from tests.support.dicom_data import union
from tests.support.ingest import all_events, collect, events_of
from tests.support.inprocess import running
from tests.support.spanner import identifier, mask, run_query, span_peers, spanner_app

if TYPE_CHECKING:
    from tests.support.dicom_peers import Peers

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
KEYS = identifier(StudyInstanceUID="", PatientID="", PatientName="")


class Clock:
    """A clock the test moves by hand (for back-off and TTL expiry)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def everything(peers: Peers, *keys: str) -> set[str]:
    """The STUDY union of what the given peers ("a", "b", "c") hold."""
    return union([d for key in keys for d in peers.loaded[key]], "STUDY")


def cancel_after_first_match(port: int) -> tuple[list[int], float]:
    """A C-FIND to the spanning SCP that sends C-CANCEL on its first pending
    response; (every status received, seconds until the final one)."""
    ae = AE(ae_title="CANCELLER")
    ae.add_requested_context(STUDY_ROOT_FIND)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate("127.0.0.1", port, ae_title="CORRMESH")
    assert assoc.is_established
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = keys.PatientID = ""
    statuses: list[int] = []
    started = time.monotonic()
    try:
        context_id = assoc.accepted_contexts[0].context_id
        for status, _match in assoc.send_c_find(keys, STUDY_ROOT_FIND, msg_id=7):
            statuses.append(int(status.Status))
            if len(statuses) == 1 and statuses[0] in PENDING:
                assoc.send_c_cancel(7, context_id)
        return statuses, time.monotonic() - started
    finally:
        assoc.release()


async def test_c_cancel_ends_a_spanning_find_with_fe00(tmp_path: Path, peers: Peers) -> None:
    # Orthanc B hangs: without the cancel the find would wait its 30 s timeout.
    async with spanner_app(f"sqlite:///{tmp_path / 's.db'}", spanner_dicom_port=free_port()) as (
        stub,
        app,
    ):
        await span_peers(
            stub, peers, deduplication_strategy=pb.DEDUPLICATION_STRATEGY_FIRST_WINS,
            query_timeout=duration_pb2.Duration(seconds=30),
        )  # fmt: skip
        await stub.StartListeners(pb.StartListenersRequest(listener_ids=["dimse-scp"]))
        with peers.orthanc_b.process.frozen():
            statuses, seconds = await asyncio.to_thread(
                cancel_after_first_match, app.listeners.dimse_port
            )
    assert statuses[-1] == 0xFE00
    assert set(statuses[:-1]) <= set(PENDING) and statuses[0] in PENDING
    assert len(statuses) - 1 < len(everything(peers, "a", "b", "c"))
    assert seconds < 10


async def test_an_unhealthy_source_is_skipped_for_its_backoff_then_retried(
    tmp_path: Path, peers: Peers
) -> None:
    clock = Clock()
    async with spanner_app(f"sqlite:///{tmp_path / 's.db'}") as (stub, app):
        app.engine.health = HealthTracker(failure_threshold=1, base_backoff=60.0, clock=clock)
        config_id, nodes = await span_peers(stub, peers)
        b = nodes["b"]
        with peers.orthanc_b.process.stopped():
            _, first, _ = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
            assert {s.node_id: s.outcome for s in first}[b] == pb.SOURCE_OUTCOME_FAILED

            matches, statuses, summary = await run_query(
                stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS
            )
            skipped = next(s for s in statuses if s.node_id == b)
            assert skipped.outcome == pb.SOURCE_OUTCOME_SKIPPED and skipped.attempts == 0
            assert "back-off" in skipped.error
            assert next(s for s in summary.sources if s.node_id == b) == skipped
            assert summary.partial and summary.outcome == pb.OPERATION_OUTCOME_PARTIAL
            assert {m.dedup_key for m in matches} == everything(peers, "a", "c")
            health = {
                h.node_id: h
                for h in (await stub.GetServiceStatus(pb.GetServiceStatusRequest())).sources
            }
            assert not health[b].healthy and health[b].HasField("backoff_until")
            assert health[b].backoff_until.seconds == int(clock.now + 60)
            assert health[nodes["a"]].healthy and health[nodes["c"]].healthy

        # Up again, but still inside its back-off: not asked.
        _, statuses, _ = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert {s.node_id: s.outcome for s in statuses}[b] == pb.SOURCE_OUTCOME_SKIPPED

        clock.now += 61
        matches, statuses, summary = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert {s.node_id: s.outcome for s in statuses}[b] == pb.SOURCE_OUTCOME_SUCCEEDED
        assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED and not summary.partial
        assert {m.dedup_key for m in matches} == everything(peers, "a", "b", "c")
        status = await stub.GetServiceStatus(pb.GetServiceStatusRequest())
        assert all(h.healthy for h in status.sources)


async def test_results_are_cached_for_the_configured_ttl(tmp_path: Path, peers: Peers) -> None:
    clock = Clock()
    async with spanner_app(f"sqlite:///{tmp_path / 's.db'}") as (stub, app):
        app.engine.cache = TtlCache(clock=clock)
        config_id, nodes = await span_peers(
            stub, peers, cache_ttl=duration_pb2.Duration(seconds=30)
        )
        fresh, _, summary = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED
        assert {m.dedup_key for m in fresh} == everything(peers, "a", "b", "c")

        with peers.orthanc_b.process.stopped():
            # Within the TTL the same query is answered without asking anyone.
            cached, _, summary = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
            assert [m.dedup_key for m in cached] == [m.dedup_key for m in fresh]
            assert [m.node_ids for m in cached] == [m.node_ids for m in fresh]
            assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED and not summary.partial

            # Other keys are another entry: asked live, and B is down.
            other = identifier(StudyInstanceUID="", PatientID="")
            _, _, summary = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, other)
            assert summary.outcome == pb.OPERATION_OUTCOME_PARTIAL

            clock.now += 31
            expired, statuses, summary = await run_query(
                stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS
            )
            assert summary.outcome == pb.OPERATION_OUTCOME_PARTIAL
            assert {s.node_id: s.outcome for s in statuses}[nodes["b"]] == (
                pb.SOURCE_OUTCOME_FAILED
            )
            assert {m.dedup_key for m in expired} == everything(peers, "a", "c")


async def test_failed_and_slow_sources_reach_ingest(tmp_path: Path, peers: Peers) -> None:
    async with (
        running(IngestApp, "ingest", database_url=f"sqlite:///{tmp_path / 'i.db'}") as (
            _ingest_app,
            ingest_address,
        ),
        grpc.aio.insecure_channel(ingest_address) as channel,
        spanner_app(f"sqlite:///{tmp_path / 's.db'}", ingest_address=ingest_address) as (
            stub,
            app,
        ),
    ):
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        subscription = ingest.Subscribe(
            ingest_pb2.SubscribeRequest(filter=ingest_pb2.EventFilter(sources=["corrmesh/spanner"]))
        )
        # Every real answer takes more than a millisecond: A and C count as slow.
        app.publisher.slow_seconds = 0.001
        config_id, nodes = await span_peers(stub, peers)
        with peers.orthanc_b.process.stopped():
            await run_query(
                stub, config_id, pb.QUERY_LEVEL_STUDY,
                identifier(StudyInstanceUID="", PatientName="Müller*"),
            )  # fmt: skip
        await app.publisher.flush()
        events = await all_events(ingest, ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM]))
        streamed = events_of(await collect(subscription, lambda r: len(events_of(r)) >= 3))
        subscription.cancel()

    by_node = {e.resource.uid: e for e in events if e.source == "corrmesh/spanner"}
    assert set(by_node) == set(nodes.values())
    failed = by_node[nodes["b"]]
    assert (failed.type, failed.severity) == ("SourceFailed", event_pb2.SEVERITY_ERROR)
    assert failed.fingerprint == f"spanner/{nodes['b']}/SourceFailed"
    assert failed.attributes["ae_title"] == "ORTHANCB"
    assert failed.attributes["outcome"] == "FAILED"
    for key in ("a", "c"):
        slow = by_node[nodes[key]]
        assert (slow.type, slow.severity) == ("SourceSlow", event_pb2.SEVERITY_WARNING)
        assert int(slow.attributes["latency_ms"]) >= 1
    assert "Müller" not in str(events)
    assert {e.resource.uid for e in streamed} == set(nodes.values())


async def test_a_configuration_change_applies_to_the_next_query(
    tmp_path: Path, peers: Peers
) -> None:
    # Configurations are reused between queries; a change through this process
    # must still be seen at once.
    async with spanner_app(f"sqlite:///{tmp_path / 's.db'}") as (stub, _app):
        config_id, nodes = await span_peers(stub, peers)
        _, statuses, _ = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert {s.node_id for s in statuses} == set(nodes.values())
        listing = await stub.ListSourceMappings(pb.ListSourceMappingsRequest(config_id=config_id))
        b_mapping = next(m for m in listing.mappings if m.node_id == nodes["b"])
        b_mapping.enabled = False
        await stub.UpdateSourceMapping(
            pb.UpdateSourceMappingRequest(mapping=b_mapping, update_mask=mask("enabled"))
        )
        matches, statuses, _ = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert {s.node_id for s in statuses} == {nodes["a"], nodes["c"]}
        assert {m.dedup_key for m in matches} == everything(peers, "a", "c")
