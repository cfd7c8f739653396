"""Failure strategies with a real peer stopped mid-test, retries, and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import pytest

from corrmesh.v1 import spanner_pb2 as pb
from tests.support.dicom_data import union
from tests.support.spanner import identifier, mask, run_query, span_peers, spanner_client

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub
    from tests.support.dicom_peers import Peers

KEYS = identifier(StudyInstanceUID="", PatientID="", PatientName="", PatientBirthDate="")


@pytest.fixture
def b_stopped(peers: Peers) -> Iterator[Peers]:
    """Orthanc B down for the test, up again afterwards."""
    with peers.orthanc_b.process.stopped():
        yield peers


async def test_best_effort_returns_the_others_marked_partial(
    spanner: Stub, b_stopped: Peers
) -> None:
    peers = b_stopped
    config_id, nodes = await span_peers(
        spanner, peers, failure_strategy=pb.FAILURE_STRATEGY_BEST_EFFORT
    )
    matches, statuses, summary = await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
    expected = union(peers.loaded["a"] + peers.loaded["c"], "STUDY")
    assert sorted(m.dedup_key for m in matches) == sorted(expected)
    assert summary.outcome == pb.OPERATION_OUTCOME_PARTIAL and summary.partial
    outcome = {s.node_id: s.outcome for s in statuses}
    assert outcome[nodes["b"]] == pb.SOURCE_OUTCOME_FAILED
    assert outcome[nodes["a"]] == outcome[nodes["c"]] == pb.SOURCE_OUTCOME_SUCCEEDED


async def test_fail_fast_is_an_error(spanner: Stub, b_stopped: Peers) -> None:
    config_id, _ = await span_peers(
        spanner, b_stopped, failure_strategy=pb.FAILURE_STRATEGY_FAIL_FAST,
        deduplication_strategy=pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE,
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "ORTHANCB" in (caught.value.details() or "")


@pytest.mark.parametrize(("threshold", "succeeds"), [(2, True), (3, False)])
async def test_minimum_threshold(
    spanner: Stub, b_stopped: Peers, threshold: int, succeeds: bool
) -> None:
    config_id, _ = await span_peers(
        spanner, b_stopped, failure_strategy=pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD,
        minimum_success_threshold=threshold,
    )  # fmt: skip
    if succeeds:
        matches, _, summary = await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert summary.outcome == pb.OPERATION_OUTCOME_PARTIAL
        assert matches
    else:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_retries_are_counted(spanner: Stub, b_stopped: Peers) -> None:
    config_id, nodes = await span_peers(spanner, b_stopped)
    listing = await spanner.ListSourceMappings(pb.ListSourceMappingsRequest(config_id=config_id))
    b_mapping = next(m for m in listing.mappings if m.node_id == nodes["b"])
    b_mapping.max_retries = 2
    await spanner.UpdateSourceMapping(
        pb.UpdateSourceMappingRequest(mapping=b_mapping, update_mask=mask("max_retries"))
    )
    _, statuses, _ = await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, KEYS)
    b_status = next(s for s in statuses if s.node_id == nodes["b"])
    assert (b_status.outcome, b_status.attempts) == (pb.SOURCE_OUTCOME_FAILED, 3)


async def test_every_query_is_audited_without_phi(peers: Peers, database_url: str) -> None:
    async with spanner_client(database_url) as stub:
        config_id, nodes = await span_peers(stub, peers)
        keys = identifier(
            PatientName="Müller*", PatientBirthDate="19600101", StudyInstanceUID="",
            PatientID="",
        )  # fmt: skip
        _, _, summary = await run_query(stub, config_id, pb.QUERY_LEVEL_STUDY, keys)
        logs = (await stub.ListQueryLogs(pb.ListQueryLogsRequest(config_id=config_id))).logs
    assert len(logs) == 1
    entry = logs[0]
    assert entry.operation == pb.SPANNING_OPERATION_C_FIND
    assert entry.level == pb.QUERY_LEVEL_STUDY
    assert entry.outcome == pb.OPERATION_OUTCOME_SUCCEEDED
    assert entry.query_keys["PatientName"] == "<redacted>"
    assert entry.query_keys["PatientBirthDate"] == "<redacted>"
    assert entry.query_keys["StudyInstanceUID"] == ""
    assert "Müller" not in str(entry)
    assert {s.node_id for s in entry.sources} == set(nodes.values())
    assert (entry.matches_before_dedup, entry.matches_after_dedup) == (
        summary.matches_before_dedup,
        summary.matches_after_dedup,
    )
    assert entry.matches_after_dedup == 1 and entry.requested_by
