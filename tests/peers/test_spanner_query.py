"""Spanning C-FIND and QIDO-RS against the real peers, checked against the union
computed from the files loaded into them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from corrmesh.v1 import spanner_pb2 as pb
from tests.support.dicom_data import G1_DESCRIPTION, G1_SERIES, G1_STUDY, holders, union
from tests.support.spanner import identifier, run_query, span_peers, values_of

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub
    from tests.support.dicom_peers import Peers

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
RTPLAN_STUDY = "1.22.333.4.555555.6.7777777777777777777777777777"
STUDY_KEYS = identifier(
    StudyInstanceUID="", PatientID="", PatientName="", StudyDescription="", StudyDate=""
)


def everything(peers: Peers) -> list:
    return [ds for items in peers.loaded.values() for ds in items]


@pytest.mark.parametrize(
    "strategy",
    [
        pb.DEDUPLICATION_STRATEGY_FIRST_WINS,
        pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE,
        pb.DEDUPLICATION_STRATEGY_MERGE_ALL,
    ],
)
async def test_study_query_is_the_union_folded_by_strategy(
    spanner: Stub, peers: Peers, strategy: int
) -> None:
    config_id, nodes = await span_peers(spanner, peers, deduplication_strategy=strategy)
    matches, statuses, summary = await run_query(
        spanner, config_id, pb.QUERY_LEVEL_STUDY, STUDY_KEYS
    )
    expected = union(everything(peers), "STUDY")
    assert sorted(m.dedup_key for m in matches) == sorted(expected)
    assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED and not summary.partial
    assert summary.matches_after_dedup == len(expected)
    per_source = sum(len(union(items, "STUDY")) for items in peers.loaded.values())
    assert summary.matches_before_dedup == per_source
    assert {s.node_id for s in statuses} == set(nodes.values())
    assert all(s.outcome == pb.SOURCE_OUTCOME_SUCCEEDED for s in statuses)

    g1 = next(m for m in matches if m.dedup_key == G1_STUDY)
    description = values_of(g1, "StudyDescription")
    if strategy == pb.DEDUPLICATION_STRATEGY_FIRST_WINS:
        assert description in ([G1_DESCRIPTION["a"]], [G1_DESCRIPTION["b"]], [])
        assert len(g1.node_ids) == 1
    else:
        # A is preferred; dcmqrscp's copy has no description, so is never most complete.
        assert description == [G1_DESCRIPTION["a"]]
        assert g1.node_ids == [nodes[k] for k in ("a", "b", "c")]
    ct = next(m for m in matches if values_of(m, "PatientID") == ["1CT1"])
    assert holders(peers.loaded, "STUDY", ct.dedup_key) == {"a", "c"}


async def test_merge_all_takes_each_attribute_from_the_preferred_source(
    spanner: Stub, peers: Peers
) -> None:
    config_id, nodes = await span_peers(
        spanner, peers, order=("c", "b", "a"),
        deduplication_strategy=pb.DEDUPLICATION_STRATEGY_MERGE_ALL,
    )  # fmt: skip
    matches, _, _ = await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, STUDY_KEYS)
    g1 = next(m for m in matches if m.dedup_key == G1_STUDY)
    # dcmqrscp (first) has no description: it comes from B, the next preferred.
    assert values_of(g1, "StudyDescription") == [G1_DESCRIPTION["b"]]
    assert values_of(g1, "PatientName") == ["Müller^Jürgen"]
    assert g1.node_ids == [nodes["c"], nodes["b"], nodes["a"]]


@pytest.mark.parametrize(
    ("level", "model", "keys", "where"),
    [
        (pb.QUERY_LEVEL_PATIENT, pb.INFORMATION_MODEL_PATIENT_ROOT,
         identifier(PatientID="", PatientName=""), {}),
        (pb.QUERY_LEVEL_SERIES, pb.INFORMATION_MODEL_STUDY_ROOT,
         identifier(StudyInstanceUID=G1_STUDY, SeriesInstanceUID="", Modality=""),
         {"StudyInstanceUID": G1_STUDY}),
        (pb.QUERY_LEVEL_IMAGE, pb.INFORMATION_MODEL_STUDY_ROOT,
         identifier(StudyInstanceUID=G1_STUDY, SeriesInstanceUID=G1_SERIES[0],
                    SOPInstanceUID=""),
         {"SeriesInstanceUID": G1_SERIES[0]}),
        (pb.QUERY_LEVEL_STUDY, pb.INFORMATION_MODEL_PATIENT_ROOT,
         identifier(PatientID="PID-G1", StudyInstanceUID=""), {"PatientID": "PID-G1"}),
    ],
)  # fmt: skip
async def test_every_level_and_model_matches_the_union(
    spanner: Stub, peers: Peers, level: int, model: int, keys: pb.DicomDataset, where: dict
) -> None:
    config_id, _ = await span_peers(spanner, peers)
    matches, _, summary = await run_query(spanner, config_id, level, keys, information_model=model)
    level_name = pb.QueryLevel.Name(level).removeprefix("QUERY_LEVEL_")  # type: ignore[arg-type]
    assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED, summary
    assert sorted(m.dedup_key for m in matches) == sorted(
        union(everything(peers), level_name, **where)
    )


@pytest.mark.parametrize(
    ("keys", "expected_ids"),
    [
        (identifier(PatientID="SCS*", StudyInstanceUID=""), {"SCSGERM", "SCSGREEK", "SCSRUSS"}),
        (identifier(StudyDate="20040101-20041231", PatientID="", StudyInstanceUID=""),
         {"1CT1", "4MR1"}),
        (identifier(StudyInstanceUID=[CT_STUDY, RTPLAN_STUDY], PatientID=""), {"1CT1", "id00001"}),
    ],
)  # fmt: skip
async def test_wildcard_range_and_list_matching_pass_through(
    spanner: Stub, peers: Peers, keys: pb.DicomDataset, expected_ids: set[str]
) -> None:
    config_id, _ = await span_peers(spanner, peers)
    matches, _, _ = await run_query(spanner, config_id, pb.QUERY_LEVEL_STUDY, keys)
    found = {values_of(m, "PatientID")[0] for m in matches}
    assert found == expected_ids


async def test_each_response_is_decoded_with_its_own_character_set(
    spanner: Stub, peers: Peers
) -> None:
    config_id, _ = await span_peers(spanner, peers)
    matches, _, _ = await run_query(
        spanner, config_id, pb.QUERY_LEVEL_STUDY, identifier(PatientID="", PatientName="",
        StudyInstanceUID="")
    )  # fmt: skip
    names = {values_of(m, "PatientID")[0]: values_of(m, "PatientName") for m in matches}
    assert names["SCSGREEK"] == ["Διονυσιος"]  # ISO_IR 126 file, UTF-8 Orthanc
    assert names["SCSRUSS"] == ["Люкceмбypг"]  # noqa: RUF001 - the file's own mixed script
    assert names["SCSGERM"] == ["Äneas^Rüdiger"]  # Latin1 Orthanc
    assert names["PID-G1"] == ["Müller^Jürgen"]
    assert names["X1EXAMPLE"] == ["Wang^XiaoDong=王^小東"]
    assert names["H31EXAMPLE"] == ["Yamada^Tarou=山田^太郎=やまだ^たろう"]


async def test_qido_sources_give_the_same_union(spanner: Stub, peers: Peers) -> None:
    config_id, nodes = await span_peers(spanner, peers, dicomweb=("a", "b"))
    matches, statuses, summary = await run_query(
        spanner, config_id, pb.QUERY_LEVEL_STUDY, STUDY_KEYS
    )
    assert summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED, summary
    assert sorted(m.dedup_key for m in matches) == sorted(union(everything(peers), "STUDY"))
    protocols = {s.node_id: s.protocol for s in statuses}
    assert protocols[nodes["a"]] == pb.SOURCE_PROTOCOL_DICOMWEB
    assert protocols[nodes["c"]] == pb.SOURCE_PROTOCOL_DIMSE
