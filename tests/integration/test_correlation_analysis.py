"""Root cause, pattern and impact on real groups: Topology in the loop, stored, streamed."""

from __future__ import annotations

import itertools
from pathlib import Path

from google.protobuf import field_mask_pb2

from corrmesh.v1 import correlation_pb2, event_pb2, topology_pb2
from tests.support.correlation_events import deployment, event
from tests.support.correlation_mesh import Mesh, mesh, poll, watch


def depends(dependent: str, dependency: str) -> topology_pb2.Dependency:
    declared = topology_pb2.Dependency(to=deployment(dependency))
    getattr(declared, "from").CopyFrom(deployment(dependent))
    return declared


async def analysed(mesh_: Mesh, group_id: str) -> correlation_pb2.Group:
    """The group once its analysis has caught up with its members."""
    found: list[correlation_pb2.Group] = []

    async def current() -> bool:
        stats = await mesh_.correlation.GetStats(correlation_pb2.GetStatsRequest())
        reply = await mesh_.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id=group_id))
        found[:] = [reply.group]
        return stats.groups_awaiting_analysis == 0 and reply.group.analyzed_revision > 0

    await poll(current)
    return found[0]


OUTAGE = (
    # mysql runs out of memory; the api and then the frontend that depend on it fail.
    (0.0, "mysql", "OOMKilled", "OOMKilled: container mysql exceeded its memory limit"),
    (4.0, "mysql", "BackOff", "Back-off restarting failed container mysql in pod mysql-0"),
    (9.0, "api", "Unhealthy", "Readiness probe failed: dial tcp mysql:3306: connection refused"),
    (21.0, "api", "Unhealthy", "Readiness probe failed: dial tcp mysql:3306: connection refused"),
    (
        30.0,
        "frontend",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
    ),
)


def outage_events() -> list[event_pb2.Event]:
    return [
        event(
            at,
            resource=deployment(name),
            type=reason,
            title=text,
            description=text,
            fingerprint=f"{name}/{reason}",
            source="kubernetes/prod-eu",
        )
        for at, name, reason, text in OUTAGE
    ]


async def test_cascade_names_its_root_cause_pattern_and_impact(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        await m.topology.UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(
                dependencies=[
                    depends("api", "mysql"),
                    depends("frontend", "api"),
                    depends("checkout", "api"),
                ]
            )
        )
        events = outage_events()
        sequences = await m.publish(*events)
        await m.consumed(sequences[-1])
        located = await m.correlation.GetGroupForEvent(
            correlation_pb2.GetGroupForEventRequest(event_id=events[0].event_id)
        )
        group = await analysed(m, located.group.group_id)
        assert group.member_count == len(events)

        best = group.root_cause_candidates[0]
        assert best.resource.name == "mysql"
        assert best.event_id == events[0].event_id
        assert [c.resource.name for c in group.root_cause_candidates][:3] == [
            "mysql",
            "api",
            "frontend",
        ]
        assert all(a.score >= b.score for a, b in itertools.pairwise(group.root_cause_candidates))

        assert group.pattern.pattern == "cascading_failure"
        assert group.pattern.root_cause_resource.name == "mysql"
        assert group.pattern.summary == "Root cause: mysql memory exhaustion affecting 2 services"
        assert "memory limit of mysql" in group.pattern.recommended_action
        assert group.pattern.chain_event_ids[0] == events[0].event_id

        impacted = {i.resource.name for i in group.impact}
        assert impacted == {"api", "frontend", "checkout"}, "checkout is hit though it is quiet"
        assert group.impact_summary.startswith("Cascading failure will impact: ")

        explained = await m.correlation.ExplainGroup(
            correlation_pb2.ExplainGroupRequest(group_id=group.group_id)
        )
        assert "Root cause: mysql memory exhaustion" in explained.summary
        assert explained.pattern.pattern == "cascading_failure"

        # Subscribers see the analysis arrive as its own update.
        updates, _ = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(),
            lambda got, _through: any(
                u.type == correlation_pb2.GROUP_UPDATE_TYPE_ANALYZED for u in got
            ),
        )
        announced = [u for u in updates if u.type == correlation_pb2.GROUP_UPDATE_TYPE_ANALYZED]
        assert announced[-1].group.root_cause_candidates[0].resource.name == "mysql"

    # Stored with the group: a restarted Correlation serves it as it was.
    async with mesh(database_url, tmp_path) as m:
        again = await m.correlation.GetGroup(
            correlation_pb2.GetGroupRequest(group_id=group.group_id)
        )
        assert again.group.pattern == group.pattern
        assert list(again.group.root_cause_candidates) == list(group.root_cause_candidates)


async def test_without_topology_the_ranking_still_follows_order_and_priors(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        # No dependencies declared: Topology knows none of these resources.
        events = [
            event(
                0,
                resource=deployment("api"),
                type="Unhealthy",
                title="Readiness probe failed",
                fingerprint="shared",
            ),
            event(
                3,
                resource=deployment("cache"),
                type="OOMKilled",
                title="OOMKilled: container cache",
                fingerprint="shared",
            ),
            event(
                6,
                resource=deployment("api"),
                type="Unhealthy",
                title="Readiness probe failed",
                fingerprint="shared",
            ),
        ]
        sequences = await m.publish(*events)
        await m.consumed(sequences[-1])
        located = await m.correlation.GetGroupForEvent(
            correlation_pb2.GetGroupForEventRequest(event_id=events[0].event_id)
        )
        group = await analysed(m, located.group.group_id)
        names = [c.resource.name for c in group.root_cause_candidates]
        # The OOMKill's prior outweighs api's head start of three seconds.
        assert names[:2] == ["cache", "api"]
        assert not group.impact, "Topology knows nothing to impact"


async def test_groups_that_left_the_window_before_their_turn_are_analysed_from_the_store(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        events = outage_events()
        # Two hours later, in the same publish: the outage's group leaves the
        # window in the very batch that made it, before the analyst's turn.
        later = event(7200, resource=deployment("billing"), type="BackOff", title="Back-off")
        sequences = await m.publish(*events, later)
        await m.consumed(sequences[-1])
        located = await m.correlation.GetGroupForEvent(
            correlation_pb2.GetGroupForEventRequest(event_id=events[0].event_id)
        )
        group = await analysed(m, located.group.group_id)
        assert [c.resource.name for c in group.root_cause_candidates][:1] == ["mysql"]


async def test_merging_groups_of_one_continuation_chain_keeps_each_link_once(
    database_url: str, tmp_path: Path
) -> None:
    """Groups linked to one group, and to each other, merge without storing a
    link twice (the stream would stall on the store's unique key) or linking a
    group to itself."""
    async with mesh(database_url, tmp_path) as m:
        await m.correlation.UpdateConfig(
            correlation_pb2.UpdateConfigRequest(
                config=correlation_pb2.CorrelationConfig(max_group_size=2),
                update_mask=field_mask_pb2.FieldMask(paths=["max_group_size"]),
            )
        )
        # One outage of six events in groups of two.
        events = [event(i, fingerprint="oom/cart", resource=deployment("cart")) for i in range(6)]
        sequences = await m.publish(*events)
        await m.consumed(sequences[-1])
        chain = []
        for item in events[::2]:
            located = await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id=item.event_id)
            )
            chain.append(located.group)
        assert len({g.group_id for g in chain}) == 3
        continuation = correlation_pb2.RELATIONSHIP_TYPE_CONTINUATION
        # Each full group goes on in a new one linked to the group it continues.
        hub = chain[0]
        spokes = chain[1:]
        for spoke in spokes:
            assert [(k.group_id, k.relationship_type) for k in spoke.links] == [
                (hub.group_id, continuation)
            ]
        # Both spokes link to the hub: merged, the link is kept once.
        merged = await m.correlation.MergeGroups(
            correlation_pb2.MergeGroupsRequest(group_ids=[g.group_id for g in spokes])
        )
        kept = merged.group.group_id
        assert [k.group_id for k in merged.group.links] == [hub.group_id]
        again = await m.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id=hub.group_id))
        assert [k.group_id for k in again.group.links] == [kept]
        # Then the hub joins too: no link is left between merged groups.
        merged = await m.correlation.MergeGroups(
            correlation_pb2.MergeGroupsRequest(group_ids=[kept, hub.group_id])
        )
        assert not merged.group.links
        assert merged.group.member_count == len(events)
        # The stream still flows.
        more = await m.publish(event(7, fingerprint="oom/cart", resource=deployment("cart")))
        await m.consumed(more[-1])
