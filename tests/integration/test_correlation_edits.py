"""Operators' edits and lookups over gRPC, persisted, surviving a restart.

Scenarios 9-15 of incident-correlation-engine.md's list: manual correlation,
resolve, group for an event, its correlations, active groups, statistics,
start/stop.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import correlation_pb2
from tests.support.correlation_events import event
from tests.support.correlation_mesh import Mesh, mesh, watch

U = correlation_pb2.GroupUpdateType
S = correlation_pb2.GroupStatus


async def group_of(m: Mesh, event_id: str) -> correlation_pb2.Group:
    request = correlation_pb2.GetGroupForEventRequest(event_id=event_id)
    return (await m.correlation.GetGroupForEvent(request)).group


def ids(group: correlation_pb2.Group) -> set[str]:
    return {member.event_id for member in group.members}


async def test_edits_by_hand_are_committed_streamed_and_survive_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        sequences = await m.publish(
            event(0, event_id="a", fingerprint="f1", title="OOMKilled"),
            event(2, event_id="b", fingerprint="f1", title="OOMKilled"),
            event(3, event_id="c", fingerprint="f2", title="Readiness probe failed"),
            event(4, event_id="d", fingerprint="f2", title="Readiness probe failed"),
            event(5, event_id="e", title="Payment errors rising"),
        )
        await m.consumed(sequences[-1])
        first, second = await group_of(m, "a"), await group_of(m, "c")

        correlated = await m.correlation.CorrelateEvents(
            correlation_pb2.CorrelateEventsRequest(event_ids=["e", "a"], reason="one outage")
        )
        assert correlated.group.group_id == first.group_id
        assert ids(correlated.group) == {"a", "b", "e"}
        (manual,) = [x for x in correlated.group.edges if x.to_event_id == "e"]
        assert (manual.strategy, manual.reason) == ("manual", "correlated by hand: one outage")

        merged = await m.correlation.MergeGroups(
            correlation_pb2.MergeGroupsRequest(group_ids=[second.group_id, first.group_id])
        )
        assert merged.group.group_id == first.group_id, "the larger group is the base"
        assert ids(merged.group) == {"a", "b", "c", "d", "e"}
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await m.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id=second.group_id))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await m.correlation.SplitGroup(
                correlation_pb2.SplitGroupRequest(group_id=first.group_id, event_ids=["c", "zz"])
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(bad.value) == ["event_ids[1]"]

        split = await m.correlation.SplitGroup(
            correlation_pb2.SplitGroupRequest(group_id=first.group_id, event_ids=["c", "d"])
        )
        assert ids(split.original_group) == {"a", "b", "e"}
        assert ids(split.new_group) == {"c", "d"}
        assert [(x.from_event_id, x.to_event_id) for x in split.new_group.edges] == [("c", "d")]
        assert split.new_group.primary_event_id == "c"
        assert all("c" not in (x.from_event_id, x.to_event_id) for x in split.original_group.edges)

        resolved = await m.correlation.ResolveGroup(
            correlation_pb2.ResolveGroupRequest(
                group_id=split.new_group.group_id, note="rolled back"
            )
        )
        assert resolved.group.status == S.GROUP_STATUS_RESOLVED
        assert resolved.group.metadata["resolution_note"] == "rolled back"

        explained = await m.correlation.ExplainGroup(
            correlation_pb2.ExplainGroupRequest(group_id=first.group_id)
        )
        assert [step.event_id for step in explained.steps] == ["a", "b", "e"]
        assert explained.steps[0].text == "OOMKilled: the first event of the group"
        assert explained.steps[1].text.startswith("OOMKilled: joined by fingerprint (1.00), same")
        assert "joined by manual (1.00), correlated by hand: one outage" in explained.steps[2].text
        assert explained.summary.startswith("OOMKilled: 3 events over 5 s")

        # The analyst's ANALYZED updates interleave with the edits as it catches up.
        def edits(seen: list[correlation_pb2.GroupUpdate]) -> list[correlation_pb2.GroupUpdate]:
            return [u for u in seen if u.type != U.GROUP_UPDATE_TYPE_ANALYZED]

        seen, _ = await watch(
            m.correlation, correlation_pb2.WatchGroupsRequest(), lambda u, _t: len(edits(u)) >= 7
        )
        updates = edits(seen)
        assert [u.type for u in updates] == [
            U.GROUP_UPDATE_TYPE_CREATED,
            U.GROUP_UPDATE_TYPE_CREATED,
            U.GROUP_UPDATE_TYPE_MEMBER_ADDED,
            U.GROUP_UPDATE_TYPE_MERGED,
            U.GROUP_UPDATE_TYPE_SPLIT,
            U.GROUP_UPDATE_TYPE_CREATED,
            U.GROUP_UPDATE_TYPE_STATUS_CHANGED,
        ]
        assert updates[3].other_group_ids == [second.group_id]
        assert updates[4].other_group_ids == [split.new_group.group_id]

    # Stop everything, start again on the same databases: the edits are there
    # and the engine's memory came back with them.
    async with mesh(database_url, tmp_path) as m:
        assert ids(await group_of(m, "e")) == {"a", "b", "e"}
        again = await group_of(m, "d")
        assert again.status == S.GROUP_STATUS_RESOLVED
        sequences = await m.publish(event(9, event_id="d2", fingerprint="f2"))
        await m.consumed(sequences[-1])
        recurrence = await group_of(m, "d2")
        assert recurrence.group_id != again.group_id
        assert [(k.group_id, k.relationship_type) for k in recurrence.links] == [
            (again.group_id, correlation_pb2.RELATIONSHIP_TYPE_RECURRENCE)
        ]
        old = await m.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id=again.group_id))
        assert [k.group_id for k in old.group.links] == [recurrence.group_id]


async def test_lookups_statuses_and_statistics(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        await m.correlation.UpdateConfig(
            correlation_pb2.UpdateConfigRequest(
                config=correlation_pb2.CorrelationConfig(min_events_to_activate=3),
                update_mask=field_mask_pb2.FieldMask(paths=["min_events_to_activate"]),
            )
        )
        sequences = await m.publish(
            event(0, event_id="x1", fingerprint="x"),
            event(1, event_id="x2", fingerprint="x"),
            event(2, event_id="x3", fingerprint="x"),
            event(3, event_id="y1", fingerprint="y"),
            event(4, event_id="y2", fingerprint="y"),
            event(5, event_id="z", fingerprint="z"),
        )
        await m.consumed(sequences[-1])
        x = await group_of(m, "x2")
        assert x.status == S.GROUP_STATUS_ACTIVE
        by_id = {member.event_id: member for member in x.members}
        assert set(by_id["x3"].correlated_event_ids) == {"x1", "x2"}
        assert (await group_of(m, "y1")).status == S.GROUP_STATUS_BUILDING

        async def listed(*statuses: int) -> list[str]:
            request = correlation_pb2.ListGroupsRequest(statuses=list(statuses))  # type: ignore[arg-type]
            return [g.group_id for g in (await m.correlation.ListGroups(request)).groups]

        assert await listed(S.GROUP_STATUS_ACTIVE) == [x.group_id]
        assert await listed(S.GROUP_STATUS_BUILDING) == [(await group_of(m, "y1")).group_id]

        stats = await m.correlation.GetStats(correlation_pb2.GetStatsRequest())
        assert (stats.events_in, stats.groups_created, stats.active_groups) == (6, 2, 1)
        # 6 events shown as 2 groups and 1 lone event.
        assert stats.noise_reduction == pytest.approx(1 - 3 / 6)
        assert {s.strategy: s.matches for s in stats.matches} == {"fingerprint": 4}
