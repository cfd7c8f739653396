"""Correlation with the real Ingest and Topology in-process, over loopback gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from corrmesh.correlation.strategies import strategy_names
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, configure_tracing
from corrmesh.v1 import (
    correlation_pb2,
    event_pb2,
    topology_pb2,
)
from tests.support.correlation_events import deployment, event
from tests.support.correlation_mesh import mesh, poll, watch

if TYPE_CHECKING:
    pass

U = correlation_pb2.GroupUpdateType
TIMEOUT = 20.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test (the process-wide provider is set up once)."""
    exporter = InMemorySpanExporter()
    configure_tracing("correlation").add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def test_groups_form_stream_and_resume(
    database_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with mesh(database_url, tmp_path) as m:
        watcher = asyncio.create_task(
            watch(
                m.correlation,
                correlation_pb2.WatchGroupsRequest(),
                lambda updates, _t: len(updates) >= 2,
            )
        )
        events = [
            event(0, event_id="a", fingerprint="f-123", title="OOMKilled"),
            event(12, event_id="b", fingerprint="f-123", severity=event_pb2.SEVERITY_ERROR),
            event(20, event_id="c", fingerprint="f-123"),
            event(25, event_id="alone", fingerprint="f-999"),
        ]
        sequences = await m.publish(*events)
        updates, _through = await watcher
        assert [u.type for u in updates] == [
            U.GROUP_UPDATE_TYPE_CREATED,
            U.GROUP_UPDATE_TYPE_MEMBER_ADDED,
        ]
        created, added = updates
        assert created.sequence == 1 and added.sequence == 2
        assert {mm.event_id for mm in created.group.members} == {"a", "b"}
        assert created.group.edges[0].reason == "same fingerprint f-123, 12 s apart"
        assert created.group.title == "OOMKilled"
        assert created.trace_context.traceparent, "the update carries the event's trace"
        analyze_b = [
            s
            for s in spans.get_finished_spans()
            if s.name == "correlation.analyze"
            and s.attributes is not None
            and s.attributes.get("corrmesh.event_id") == "b"
        ]
        assert len(analyze_b) == 1
        assert analyze_b[0].attributes is not None
        assert analyze_b[0].attributes[CORRELATION_ATTRIBUTE] == events[1].correlation_id
        assert created.trace_context.traceparent.split("-")[1] == format(
            analyze_b[0].context.trace_id, "032x"
        )
        assert added.group.group_id == created.group.group_id
        # MEMBER_ADDED carries the member it added and its edges; GetGroup has them all.
        assert {mm.event_id for mm in added.group.members} == {"c"}
        assert added.group.member_count == 3
        assert added.group.severity == event_pb2.SEVERITY_ERROR

        await m.consumed(sequences[-1])
        group = (
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id="c")
            )
        ).group
        assert {mm.event_id for mm in group.members} == {"a", "b", "c"}
        assert group.revision == added.group.revision
        assert group.title == added.group.title
        assert len(group.edges) == 3
        fetched = await m.correlation.GetGroup(
            correlation_pb2.GetGroupRequest(group_id=group.group_id)
        )
        assert fetched.group == group

        # Resuming after the first update yields the second, not the first again.
        resumed, through = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(after_sequence=created.sequence),
            lambda updates, _t: len(updates) >= 1,
        )
        assert [u.sequence for u in resumed] == [added.sequence]
        # A filter matching nothing still reports how far it looked.
        nothing, through = await watch(
            m.correlation,
            correlation_pb2.WatchGroupsRequest(min_severity=event_pb2.SEVERITY_CRITICAL),
            lambda _u, through: through >= added.sequence,
        )
        assert nothing == [] and through == added.sequence

        stats = await m.correlation.GetStats(correlation_pb2.GetStatsRequest())
        assert stats.events_in == 4
        assert stats.groups_created == 1
        assert stats.active_groups == 1
        assert stats.consumer_sequence == sequences[-1]
        assert stats.noise_reduction == pytest.approx(1 - 2 / 4)
        assert [(s.strategy, s.matches) for s in stats.matches] == [("fingerprint", 3)]
        assert stats.analyze_latency_p99.ToNanoseconds() > 0
        # The basic view, for polling: the same progress figures, nothing counted.
        basic = await m.correlation.GetStats(
            correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_BASIC)
        )
        assert (basic.events_in, basic.groups_created, basic.consumer_sequence) == (
            4,
            1,
            sequences[-1],
        )
        assert basic.analyze_latency_p99.ToNanoseconds() > 0
        assert basic.active_groups == 0 and basic.noise_reduction == 0 and not basic.matches
        full = await m.correlation.GetStats(
            correlation_pb2.GetStatsRequest(view=correlation_pb2.STATS_VIEW_FULL)
        )
        assert full.matches == stats.matches and full.active_groups == stats.active_groups
        with pytest.raises(grpc.aio.AioRpcError) as bad_view:
            await m.correlation.GetStats(correlation_pb2.GetStatsRequest(view=9))  # type: ignore[arg-type]
        assert bad_view.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(bad_view.value) == ["view"]

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id="alone")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "alone" in (missing.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await m.correlation.GetGroup(correlation_pb2.GetGroupRequest(group_id="g-nope"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "g-nope" in (unknown.value.details() or "")


async def test_declared_dependency_joins_through_topology(
    database_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    api = deployment("api", cluster="")
    mysql = deployment("mysql", cluster="")
    async with mesh(database_url, tmp_path) as m:
        dependency = topology_pb2.Dependency(to=mysql)
        getattr(dependency, "from").CopyFrom(api)
        await m.topology.UpsertDependencies(
            topology_pb2.UpsertDependenciesRequest(dependencies=[dependency])
        )
        await m.publish(event(0, event_id="db", resource=mysql, title="OOMKilled"))
        sequences = await m.publish(
            event(4, event_id="app", resource=api, title="Readiness probe failed")
        )
        await m.consumed(sequences[-1])
        group = (
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id="app")
            )
        ).group
        assert {mm.event_id for mm in group.members} == {"db", "app"}
        assert group.primary_event_id == "db"
        assert group.title == "OOMKilled on Deployment shop/mysql and 1 more resource"
        (edge,) = group.edges
        assert edge.reason == (
            "Deployment shop/mysql and Deployment shop/api are joined by a direct dependency, "
            "4 s apart"
        )
        assert edge.score == pytest.approx(0.9)
        assert m.app.consumer is not None and m.app.consumer.relations.calls == 1

    # The Topology call ran inside the span of the event that needed it, so
    # Topology's server span belongs to that event's trace.
    finished = spans.get_finished_spans()
    analyze = [
        s
        for s in finished
        if s.name == "correlation.analyze"
        and s.attributes is not None
        and s.attributes.get("corrmesh.event_id") == "app"
    ]
    assert len(analyze) == 1
    trace_id = analyze[0].context.trace_id
    relate = [s for s in finished if s.name == "correlation.relate_resources"]
    assert [s.context.trace_id for s in relate] == [trace_id]
    server = [
        s
        for s in finished
        if s.name == "/corrmesh.v1.TopologyService/RelateResources" and s.kind == SpanKind.SERVER
    ]
    assert [s.context.trace_id for s in server] == [trace_id]
    server_attributes = server[0].attributes or {}
    analyze_attributes = analyze[0].attributes or {}
    assert server_attributes.get(CORRELATION_ATTRIBUTE) == analyze_attributes.get(
        CORRELATION_ATTRIBUTE
    )
    assert analyze_attributes.get(CORRELATION_ATTRIBUTE)


async def test_health_needs_ingest_and_topology(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        serving = health_pb2.HealthCheckResponse.SERVING

        async def is_serving() -> bool:
            reply = await m.health.Check(health_pb2.HealthCheckRequest(service=""))
            return bool(reply.status == serving)

        await poll(is_serving)
        assert await m.app.ready()


async def test_config_updates_are_validated_persisted_and_applied(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        current = (await m.correlation.GetConfig(correlation_pb2.GetConfigRequest())).config
        assert current.temporal_window.seconds == 300
        general = [s.name for s in current.strategies if not s.domain]
        assert general == strategy_names()

        async def rejected(config: correlation_pb2.CorrelationConfig, *paths: str) -> list[str]:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await m.correlation.UpdateConfig(
                    correlation_pb2.UpdateConfigRequest(
                        config=config, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
                    )
                )
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return bad_request_fields(error.value)

        config_of = correlation_pb2.CorrelationConfig
        assert await rejected(
            config_of(temporal_window=duration_pb2.Duration(seconds=-1)), "temporal_window"
        ) == ["config.temporal_window"]
        assert await rejected(config_of(), "temporal_window") == ["config.temporal_window"]
        assert await rejected(config_of(min_correlation_score=2), "min_correlation_score") == [
            "config.min_correlation_score"
        ]
        assert await rejected(config_of(merge_threshold=-1), "merge_threshold") == [
            "config.merge_threshold"
        ]
        assert await rejected(config_of(max_group_size=0), "max_group_size") == [
            "config.max_group_size"
        ]
        assert await rejected(
            config_of(strategies=[correlation_pb2.StrategyConfig(name="psychic", weight=0.5)]),
            "strategies",
        ) == ["config.strategies[0].name"]
        assert await rejected(
            config_of(strategies=[correlation_pb2.StrategyConfig(name="fingerprint", weight=3)]),
            "strategies",
        ) == ["config.strategies[0].weight"]
        assert await rejected(config_of(), "no_such_field") == ["update_mask.paths[0]"]

        updated = await m.correlation.UpdateConfig(
            correlation_pb2.UpdateConfigRequest(
                config=config_of(temporal_window=duration_pb2.Duration(seconds=30)),
                update_mask=field_mask_pb2.FieldMask(paths=["temporal_window"]),
            )
        )
        assert updated.config.temporal_window.seconds == 30
        assert updated.config.max_group_size == current.max_group_size
        again = (await m.correlation.GetConfig(correlation_pb2.GetConfigRequest())).config
        assert again == updated.config
        assert m.app.engine.config == updated.config
        stored = await asyncio.to_thread(m.app.store.load_config)
        assert stored == updated.config

        # Applied: 40 s apart is now outside the window.
        sequences = await m.publish(
            event(0, event_id="p", fingerprint="f"), event(40, event_id="q", fingerprint="f")
        )
        await m.consumed(sequences[-1])
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m.correlation.GetGroupForEvent(
                correlation_pb2.GetGroupForEventRequest(event_id="q")
            )
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_groups_filters_and_pages(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        events = []
        for index in range(3):
            severity = event_pb2.SEVERITY_CRITICAL if index == 2 else event_pb2.SEVERITY_WARNING
            for offset in range(2):
                events.append(
                    event(
                        index * 1000 + offset,
                        event_id=f"g{index}-{offset}",
                        fingerprint=f"f{index}",
                        severity=severity,
                    )
                )
        sequences = await m.publish(*events)
        await m.consumed(sequences[-1])
        seen: list[str] = []
        token = ""
        while True:
            page = await m.correlation.ListGroups(
                correlation_pb2.ListGroupsRequest(page_size=2, page_token=token)
            )
            seen += [g.primary_event_id for g in page.groups]
            token = page.next_page_token
            if not token:
                break
        assert seen == ["g0-0", "g1-0", "g2-0"]
        critical = await m.correlation.ListGroups(
            correlation_pb2.ListGroupsRequest(min_severity=event_pb2.SEVERITY_CRITICAL)
        )
        assert [g.primary_event_id for g in critical.groups] == ["g2-0"]
        active = await m.correlation.ListGroups(
            correlation_pb2.ListGroupsRequest(
                statuses=[correlation_pb2.GROUP_STATUS_RESOLVED],
                domains=[event_pb2.DOMAIN_KUBERNETES],
            )
        )
        assert list(active.groups) == []

        first = await m.correlation.ListGroups(correlation_pb2.ListGroupsRequest(page_size=1))
        bad_requests = [
            (correlation_pb2.ListGroupsRequest(page_size=-1), ["page_size"]),
            (correlation_pb2.ListGroupsRequest(page_token="garbage!"), ["page_token"]),
            (
                correlation_pb2.ListGroupsRequest(
                    page_token=first.next_page_token, min_severity=event_pb2.SEVERITY_ERROR
                ),
                ["page_token"],
            ),
            (correlation_pb2.ListGroupsRequest(statuses=cast(Any, [99])), ["statuses[0]"]),
            (correlation_pb2.ListGroupsRequest(domains=cast(Any, [0])), ["domains[0]"]),
            (correlation_pb2.ListGroupsRequest(types=cast(Any, [42])), ["types[0]"]),
            (correlation_pb2.ListGroupsRequest(min_severity=cast(Any, 17)), ["min_severity"]),
        ]
        for request, fields in bad_requests:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await m.correlation.ListGroups(request)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == fields


async def test_bad_requests_are_named_and_unknown_groups_not_found(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        stub = m.correlation
        cases: list[tuple[Any, list[str]]] = [
            (stub.GetGroup(correlation_pb2.GetGroupRequest()), ["group_id"]),
            (stub.GetGroupForEvent(correlation_pb2.GetGroupForEventRequest()), ["event_id"]),
            (stub.UpdateConfig(correlation_pb2.UpdateConfigRequest()), ["config"]),
            (stub.ExplainGroup(correlation_pb2.ExplainGroupRequest()), ["group_id"]),
            (
                stub.ResolveGroup(correlation_pb2.ResolveGroupRequest(note="x" * 1001)),
                ["group_id", "note"],
            ),
            (stub.CorrelateEvents(correlation_pb2.CorrelateEventsRequest()), ["event_ids"]),
            (
                stub.CorrelateEvents(correlation_pb2.CorrelateEventsRequest(event_ids=["a"])),
                ["event_ids"],
            ),
            (
                stub.CorrelateEvents(
                    correlation_pb2.CorrelateEventsRequest(event_ids=["a", "", "a"])
                ),
                ["event_ids[1]", "event_ids[2]"],
            ),
            (stub.MergeGroups(correlation_pb2.MergeGroupsRequest(group_ids=["g"])), ["group_ids"]),
            (stub.SplitGroup(correlation_pb2.SplitGroupRequest()), ["group_id", "event_ids"]),
        ]
        for call, fields in cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == fields
        for request, fields in [
            (correlation_pb2.WatchGroupsRequest(after_sequence=-1), ["after_sequence"]),
            (correlation_pb2.WatchGroupsRequest(max_batch_size=-5), ["max_batch_size"]),
            (correlation_pb2.WatchGroupsRequest(statuses=cast(Any, [77])), ["statuses[0]"]),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in stub.WatchGroups(request):
                    pass
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == fields

        for call in (
            stub.MergeGroups(correlation_pb2.MergeGroupsRequest(group_ids=["g-1", "g-2"])),
            stub.ResolveGroup(correlation_pb2.ResolveGroupRequest(group_id="g-1")),
            stub.SplitGroup(correlation_pb2.SplitGroupRequest(group_id="g-1", event_ids=["e"])),
            stub.CorrelateEvents(correlation_pb2.CorrelateEventsRequest(event_ids=["e-1", "e-2"])),
            stub.ExplainGroup(correlation_pb2.ExplainGroupRequest(group_id="g-1")),
            stub.GetTimeline(correlation_pb2.GetTimelineRequest(group_id="g-1")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            assert ("g-1" in (error.value.details() or "")) or (
                "e-1" in (error.value.details() or "")
            )
        # The server keeps serving.
        assert (await stub.GetConfig(correlation_pb2.GetConfigRequest())).config.enabled
