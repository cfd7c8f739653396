"""CorrelationService's RPCs.

Reads come from the store (committed state only). WatchGroups serves the
durable update log through :func:`corrmesh.runtime.streams.follow`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import duration_pb2

from corrmesh.correlation import analytics, feedback, links
from corrmesh.correlation.analysis.analyst import Analyst
from corrmesh.correlation.config import apply_update
from corrmesh.correlation.edits import GroupEditRpcs
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.ingest_reader import IngestReader, TooManyEventsError
from corrmesh.correlation.latency import LatencyReservoir
from corrmesh.correlation.queries import GroupFilter, GroupQueries, noise_reduction
from corrmesh.runtime import paging
from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    unavailable_status,
)
from corrmesh.runtime.streams import clamp_batch, follow
from corrmesh.v1 import correlation_pb2, correlation_pb2_grpc, event_pb2

Context = grpc.aio.ServicerContext[Any, Any]
_STATS_VIEWS = frozenset(correlation_pb2.StatsView.values())


def _check_enums(
    values: Iterable[int], enum: Any, path: str, violations: FieldViolations
) -> frozenset[int]:
    known = set(enum.values())
    for index, value in enumerate(values):
        if value == 0 or value not in known:
            violations.add(f"{path}[{index}]", f"must be a known {enum.DESCRIPTOR.name} value")
    return frozenset(values)


def _filter(request: Any, violations: FieldViolations, with_types: bool) -> GroupFilter:
    statuses = _check_enums(request.statuses, correlation_pb2.GroupStatus, "statuses", violations)
    domains = _check_enums(request.domains, event_pb2.Domain, "domains", violations)
    if request.min_severity not in event_pb2.Severity.values():
        violations.add("min_severity", "must be a known Severity value")
    types = (
        _check_enums(request.types, correlation_pb2.GroupType, "types", violations)
        if with_types
        else frozenset()
    )
    return GroupFilter(statuses, domains, request.min_severity, types)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class CorrelationServicer(GroupEditRpcs, correlation_pb2_grpc.CorrelationServiceServicer):
    """The RPCs over the engine, its store and its update log."""

    #: Ingest's log, for timelines and performance; CorrelationApp.start() sets it.
    ingest_events: IngestReader | None = None
    #: Set once the server starts; GetStats reports its backlog.
    analyst: Analyst | None = None

    def __init__(
        self,
        gate: EngineGate,
        queries: GroupQueries,
        latency: LatencyReservoir,
        stopping: asyncio.Event,
    ) -> None:
        self.gate = gate
        self.engine = gate.engine
        self.store = gate.store
        self.queries = queries
        self.notifier = gate.notifier
        self.latency = latency
        self.stopping = stopping
        self._config_lock = asyncio.Lock()

    async def GetGroup(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.GetGroupRequest, context: Context
    ) -> correlation_pb2.GetGroupResponse:
        if not request.group_id:
            await abort_invalid(context, [("group_id", "is required")])
        group = await asyncio.to_thread(self.queries.get_group, request.group_id)
        if group is None:
            await abort_not_found(context, "group", request.group_id)
        return correlation_pb2.GetGroupResponse(group=group)

    async def GetGroupForEvent(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.GetGroupForEventRequest, context: Context
    ) -> correlation_pb2.GetGroupForEventResponse:
        if not request.event_id:
            await abort_invalid(context, [("event_id", "is required")])
        group = await asyncio.to_thread(self.queries.group_for_event, request.event_id)
        if group is None:
            await abort_not_found(context, "group for event", request.event_id)
        return correlation_pb2.GetGroupForEventResponse(group=group)

    async def ListGroups(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.ListGroupsRequest, context: Context
    ) -> correlation_pb2.ListGroupsResponse:
        violations = FieldViolations()
        wanted = _filter(request, violations, with_types=True)
        size = paging.page_size(request.page_size, violations)
        fingerprint = paging.filter_fingerprint(
            sorted(wanted.statuses),
            sorted(wanted.domains),
            wanted.min_severity,
            sorted(wanted.types),
        )
        position = paging.decode_page_token(request.page_token, fingerprint, violations)
        if position is not None and not isinstance(position, int):
            violations.add("page_token", "not a token this service issued")
        if violations:
            await abort_invalid(context, violations)
        groups, next_position = await asyncio.to_thread(
            self.queries.list_groups, wanted, int(position or 0), size
        )
        token = ""
        if next_position is not None:
            token = paging.encode_page_token(next_position, fingerprint)
        return correlation_pb2.ListGroupsResponse(groups=groups, next_page_token=token)

    async def WatchGroups(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.WatchGroupsRequest, context: Context
    ) -> AsyncIterator[correlation_pb2.WatchGroupsResponse]:
        """Group updates after ``after_sequence``, then live ones, until shutdown.

        Every subscriber reads the durable update log from the database at its
        own pace: the engine only appends and announces the new head, and
        holds no per-subscriber buffer. A slow subscriber therefore cannot
        stall the engine or the other subscribers; it falls behind and catches
        up from the log (and may resume from its last ``through_sequence``
        after a disconnect).
        """
        violations = FieldViolations()
        wanted = _filter(request, violations, with_types=False)
        if request.after_sequence < 0:
            violations.add("after_sequence", "must not be negative")
        if request.max_batch_size < 0:
            violations.add("max_batch_size", "must not be negative")
        if violations:
            await abort_invalid(context, violations)

        # Headers now: the client knows the stream is open before the first update.
        await context.send_initial_metadata(())

        async def read_after(after: int, limit: int) -> Any:
            return await asyncio.to_thread(self.queries.read_updates, after, limit, wanted)

        async for batch in follow(
            read_after,
            request.after_sequence,
            self.notifier,
            self.stopping,
            clamp_batch(request.max_batch_size),
        ):
            yield correlation_pb2.WatchGroupsResponse(
                updates=batch.items, through_sequence=batch.through
            )

    async def GetStats(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.GetStatsRequest, context: Context
    ) -> correlation_pb2.GetStatsResponse:
        """Committed counters; noise_reduction = 1 - (groups + lone events) / events in.

        STATS_VIEW_BASIC leaves out what is counted from the stored groups.
        """
        if request.view not in _STATS_VIEWS:
            violations = FieldViolations()
            violations.add("view", "must be a known StatsView value")
            await abort_invalid(context, violations)
        full = request.view != correlation_pb2.STATS_VIEW_BASIC
        counters = await asyncio.to_thread(self.queries.counters, full)
        p50, p90, p99 = self.latency.percentiles(0.5, 0.9, 0.99)
        response = correlation_pb2.GetStatsResponse(
            events_in=counters.events_in,
            groups_created=counters.groups_created,
            analyze_latency_p50=_duration(p50),
            analyze_latency_p90=_duration(p90),
            analyze_latency_p99=_duration(p99),
            consumer_sequence=counters.consumer_sequence,
            groups_awaiting_analysis=self.analyst.awaiting if self.analyst is not None else 0,
        )
        if full:
            response.active_groups = counters.active_groups
            response.noise_reduction = noise_reduction(counters)
            response.matches.extend(
                correlation_pb2.StrategyMatches(strategy=name, matches=count)
                for name, count in sorted(counters.matches.items())
            )
        return response

    async def GetConfig(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.GetConfigRequest, context: Context
    ) -> correlation_pb2.GetConfigResponse:
        return correlation_pb2.GetConfigResponse(config=self.engine.config)

    async def UpdateConfig(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.UpdateConfigRequest, context: Context
    ) -> correlation_pb2.UpdateConfigResponse:
        async with self._config_lock:
            violations = FieldViolations()
            updated = apply_update(self.engine.config, request, violations)
            if violations:
                await abort_invalid(context, violations)
            await asyncio.to_thread(self.store.save_config, updated)
            self.engine.set_config(updated)
        return correlation_pb2.UpdateConfigResponse(config=updated)

    async def LinkCorrelations(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.LinkCorrelationsRequest, context: Context
    ) -> correlation_pb2.LinkCorrelationsResponse:
        """Stores parent→child links idempotently; rules in :mod:`corrmesh.correlation.links`."""
        violations = FieldViolations()
        specs = links.validate_links(request.links, violations)
        if violations:
            await abort_invalid(context, violations)
        try:
            stored = await asyncio.to_thread(links.link_correlations, self.store.sessions, specs)
        except links.LinkCycleError as cycle:
            await abort_invalid(
                context,
                [
                    (
                        f"links[{cycle.index}]",
                        "would make a cycle: the parent is already a descendant of the child",
                    )
                ],
            )
        return correlation_pb2.LinkCorrelationsResponse(links=stored)

    async def ListRelated(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.ListRelatedRequest, context: Context
    ) -> correlation_pb2.ListRelatedResponse:
        """Linked ids breadth first; an id nobody linked has none (ids are free-form)."""
        violations = FieldViolations()
        query = links.validate_related(request, violations)
        if violations:
            await abort_invalid(context, violations)
        related = await asyncio.to_thread(links.list_related, self.store.sessions, query)
        return correlation_pb2.ListRelatedResponse(related=related)

    async def SubmitFeedback(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.SubmitFeedbackRequest, context: Context
    ) -> correlation_pb2.SubmitFeedbackResponse:
        """Stores the feedback, then applies the rule of :mod:`.feedback` as UpdateConfig does."""
        violations = FieldViolations()
        feedback.validate_feedback(request, violations)
        if violations:
            await abort_invalid(context, violations)
        sessions = self.store.sessions
        target = await asyncio.to_thread(
            feedback.read_target, sessions, request.group_id, request.event_id
        )
        if target is None:
            await abort_not_found(context, "group", request.group_id)
        if (problem := target.problem(request.type)) is not None:
            await abort_invalid(context, [("event_id", problem)])
        strategies = target.strategies(request.type)
        async with self._config_lock:
            updated = feedback.adjust_weights(
                self.engine.config, target.domain, strategies, request.type
            )
            # Recorded first: a failure after it leaves the record without the
            # adjustment, never an adjustment nobody can trace back.
            feedback_id = await asyncio.to_thread(
                feedback.record_feedback, sessions, request, target.domain, strategies
            )
            if strategies:
                await asyncio.to_thread(self.store.save_config, updated)
                self.engine.set_config(updated)
        return correlation_pb2.SubmitFeedbackResponse(
            feedback_id=feedback_id,
            weights=feedback.weights_of(updated, target.domain, strategies),
        )

    async def GetTimeline(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.GetTimelineRequest, context: Context
    ) -> correlation_pb2.GetTimelineResponse:
        """The steps of a correlation id or of a group's members; rules in :mod:`.analytics`."""
        events = await self._target_events(request, context)
        # Off the event loop: tens of thousands of steps take a noticeable moment.
        return await asyncio.to_thread(analytics.timeline_response, events)

    async def AnalyzePerformance(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.AnalyzePerformanceRequest, context: Context
    ) -> correlation_pb2.AnalyzePerformanceResponse:
        """Per-stage durations, bottleneck and rates; rules in :mod:`.analytics`."""
        events = await self._target_events(request, context)
        return await asyncio.to_thread(analytics.performance_response, events)

    async def _target_events(
        self,
        request: correlation_pb2.GetTimelineRequest | correlation_pb2.AnalyzePerformanceRequest,
        context: Context,
    ) -> list[event_pb2.Event]:
        """The events of the request's target, read from Ingest (aborts on bad input)."""
        violations = FieldViolations()
        target = analytics.validate_target(request, violations)
        if target is None:
            await abort_invalid(context, violations)
        reader = self.ingest_events
        if reader is None:
            await abort(context, unavailable_status("Ingest is not connected yet"))
        try:
            if isinstance(request, correlation_pb2.AnalyzePerformanceRequest) and (
                target == "time_range"
            ):
                window = request.time_range
                # Only processing steps are analysed: reading other domains is waste.
                return await reader.in_range(
                    window.start_time, window.end_time, [event_pb2.DOMAIN_DICOM]
                )
            if target == "group_id":
                group = await asyncio.to_thread(self.queries.get_group, request.group_id)
                if group is None:
                    await abort_not_found(context, "group", request.group_id)
                return await reader.for_correlations(analytics.correlation_ids_of(group))
            return await reader.for_correlations([request.correlation_id])
        except TooManyEventsError as error:
            await abort_invalid(context, [(target, f"{error}, the most one call reads")])
        except grpc.aio.AioRpcError as error:
            await abort(context, unavailable_status(f"Ingest cannot be read ({error.code().name})"))
