"""The RPCs that change groups by hand: CorrelateEvents, MergeGroups, SplitGroup,
ResolveGroup, and ExplainGroup beside them.

Requests are validated before the engine is touched; the edit itself runs
through :meth:`EngineGate.edit`, between two batches of the stream, and is
committed like one. Events Ingest has logged but the consumer has not read
yet are waited for (:mod:`corrmesh.correlation.pending`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from corrmesh.correlation.dicom.keys import ROLLUP_TYPES
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.explain import explain
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.groups import GroupState, group_message
from corrmesh.correlation.ingest_reader import IngestReader
from corrmesh.correlation.pending import (
    RETRY_AFTER_SECONDS,
    NotConsumedError,
    UnknownEventsError,
    edit_when_consumed,
)
from corrmesh.correlation.queries import GroupQueries
from corrmesh.correlation.store import CorrelationStore
from corrmesh.correlation.window import EventInfo
from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    unavailable_status,
)
from corrmesh.v1 import correlation_pb2

Context = grpc.aio.ServicerContext[Any, Any]
MAX_EVENTS_PER_EDIT = 100
MAX_GROUPS_PER_MERGE = 20
MAX_TEXT = 1000
#: The NOT_FOUND resource type of an event an edit cannot find.
UNKNOWN_EVENT = "event (not in the window nor in any group)"
T = TypeVar("T")


def _derived(groups: dict[str, GroupState], paths: dict[str, str]) -> FieldViolations:
    """A violation for each derived (BATCH, PATIENT) group: their members follow
    identifiers, so they are not merged, split or given events by hand."""
    problems = FieldViolations()
    for group_id, path in paths.items():
        group = groups.get(group_id)
        if group is not None and group.type in ROLLUP_TYPES:
            kind = correlation_pb2.GroupType.Name(group.type).removeprefix("GROUP_TYPE_")  # type: ignore[arg-type]
            problems.add(path, f"is a {kind} group; its members follow their identifiers")
    return problems


class NotFoundError(LookupError):
    """An edit named something that does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name}")
        self.kind, self.name = kind, name


def _check_ids(ids: Sequence[str], path: str, limit: int, violations: FieldViolations) -> None:
    if len(ids) > limit:
        violations.add(path, f"at most {limit} per request")
    seen: set[str] = set()
    for index, value in enumerate(ids):
        if not value:
            violations.add(f"{path}[{index}]", "must not be empty")
        elif value in seen:
            violations.add(f"{path}[{index}]", "repeats an id given before")
        seen.add(value)


class GroupEditRpcs:
    """Mixed into the servicer; needs its gate, engine, store, queries and Ingest reader."""

    gate: EngineGate
    ingest_events: IngestReader | None
    engine: CorrelationEngine
    store: CorrelationStore
    queries: GroupQueries

    async def _load(self, group_ids: Sequence[str]) -> dict[str, GroupState]:
        """The named groups, full, from memory or the store (caller holds the gate)."""
        wanted = [g for g in group_ids if g not in self.engine.groups]
        stored = await asyncio.to_thread(self.store.load_groups, wanted) if wanted else []
        found = {g.group_id: g for g in stored}
        for group_id in group_ids:
            in_memory = self.engine.groups.get(group_id)
            if in_memory is not None:
                found[group_id] = in_memory
            elif group_id not in found:
                raise NotFoundError("group", group_id)
        return found

    async def _on_groups(
        self, group_ids: Sequence[str], change: Callable[[dict[str, GroupState]], T]
    ) -> T:
        """Runs ``change`` on the named groups, loaded into the engine for the while."""
        groups = await self._load(group_ids)
        self.engine.adopt(list(groups.values()))
        try:
            return change(groups)
        finally:
            self.engine.release()

    async def _run(self, context: Context, operation: Any) -> Any:
        """Runs an edit through the gate; a name that does not exist is NOT_FOUND,
        and FieldViolations the edit returns (having changed nothing) are
        INVALID_ARGUMENT. Events Ingest holds but the consumer has not read are
        waited for; UNAVAILABLE (with a retry delay) when the wait runs out."""
        try:
            result = await edit_when_consumed(
                self.gate, self.ingest_events, operation, context.time_remaining
            )
        except NotFoundError as missing:
            await abort_not_found(context, missing.kind, missing.name)
        except UnknownEventsError as unknown:
            await abort_not_found(context, UNKNOWN_EVENT, unknown.event_ids[0])
        except NotConsumedError as waiting:
            await abort(context, unavailable_status(str(waiting), RETRY_AFTER_SECONDS))
        if isinstance(result, FieldViolations):
            await abort_invalid(context, result)
        return result

    async def CorrelateEvents(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.CorrelateEventsRequest, context: Context
    ) -> correlation_pb2.CorrelateEventsResponse:
        """Puts events into one group by hand (see ManualEditsMixin.correlate).

        An event Ingest has logged but Correlation has not consumed yet is
        waited for (at most the call's deadline and ``pending.MAX_WAIT_SECONDS``;
        then UNAVAILABLE with a retry delay); one Ingest does not hold either
        is NOT_FOUND at once.
        """
        violations = FieldViolations()
        ids = list(request.event_ids)
        if not ids:
            violations.add("event_ids", "is required")
        elif len(ids) < 2 and not request.group_id:
            violations.add("event_ids", "needs two events, or one with a group_id")
        _check_ids(ids, "event_ids", MAX_EVENTS_PER_EDIT, violations)
        if len(request.reason) > MAX_TEXT:
            violations.add("reason", f"at most {MAX_TEXT} characters")
        if violations:
            await abort_invalid(context, violations)

        async def operation() -> correlation_pb2.Group | FieldViolations:
            engine = self.engine
            window = engine.window.events
            outside = [i for i in ids if i not in window]
            owners = await asyncio.to_thread(self.store.group_ids_of, outside) if outside else {}
            unknown = [event_id for event_id in outside if event_id not in owners]
            if unknown:
                raise UnknownEventsError(unknown)
            names = sorted({*owners.values(), *([request.group_id] if request.group_id else [])})
            groups = await self._load(names)
            engine.adopt(list(groups.values()))
            events: list[EventInfo] = [
                window[i] if i in window else groups[owners[i]].members[i] for i in ids
            ]
            target = groups[request.group_id] if request.group_id else None
            problems = _derived(groups, {request.group_id: "group_id"} if target else {})
            if problems:
                engine.release()
                return problems
            group = engine.correlate(events, target, request.reason)
            message = group_message(group)
            engine.release()
            return message

        group = await self._run(context, operation)
        return correlation_pb2.CorrelateEventsResponse(group=group)

    async def MergeGroups(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.MergeGroupsRequest, context: Context
    ) -> correlation_pb2.MergeGroupsResponse:
        """Folds the groups into the largest; the others are gone (MERGED update)."""
        violations = FieldViolations()
        ids = list(request.group_ids)
        if len(ids) < 2:
            violations.add("group_ids", "needs at least two groups")
        _check_ids(ids, "group_ids", MAX_GROUPS_PER_MERGE, violations)
        if violations:
            await abort_invalid(context, violations)

        def merge(groups: dict[str, GroupState]) -> correlation_pb2.Group | FieldViolations:
            problems = _derived(groups, {g: f"group_ids[{i}]" for i, g in enumerate(ids)})
            if problems:
                return problems
            return group_message(self.engine.merge([groups[i] for i in ids]))

        async def operation() -> correlation_pb2.Group | FieldViolations:
            return await self._on_groups(ids, merge)

        group = await self._run(context, operation)
        return correlation_pb2.MergeGroupsResponse(group=group)

    async def SplitGroup(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.SplitGroupRequest, context: Context
    ) -> correlation_pb2.SplitGroupResponse:
        """Moves members into a new group; edges between the two parts are dropped."""
        violations = FieldViolations()
        if not request.group_id:
            violations.add("group_id", "is required")
        ids = list(request.event_ids)
        if not ids:
            violations.add("event_ids", "is required")
        _check_ids(ids, "event_ids", MAX_EVENTS_PER_EDIT, violations)
        if violations:
            await abort_invalid(context, violations)

        def split(
            groups: dict[str, GroupState],
        ) -> tuple[correlation_pb2.Group, correlation_pb2.Group] | FieldViolations:
            group = groups[request.group_id]
            problems = _derived(groups, {request.group_id: "group_id"})
            if problems:
                return problems
            for index, event_id in enumerate(ids):
                if event_id not in group.members:
                    problems.add(f"event_ids[{index}]", "is not a member of the group")
            if not problems and len(ids) >= len(group.members):
                problems.add("event_ids", "would leave the group empty")
            if problems:
                return problems
            new = self.engine.split(group, ids)
            return (group_message(group), group_message(new))

        async def operation() -> (
            tuple[correlation_pb2.Group, correlation_pb2.Group] | FieldViolations
        ):
            return await self._on_groups([request.group_id], split)

        original, new = await self._run(context, operation)
        return correlation_pb2.SplitGroupResponse(original_group=original, new_group=new)

    async def ResolveGroup(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.ResolveGroupRequest, context: Context
    ) -> correlation_pb2.ResolveGroupResponse:
        """An operator resolves a group (a no-op on a resolved or archived one)."""
        violations = FieldViolations()
        if not request.group_id:
            violations.add("group_id", "is required")
        if len(request.note) > MAX_TEXT:
            violations.add("note", f"at most {MAX_TEXT} characters")
        if violations:
            await abort_invalid(context, violations)

        async def operation() -> correlation_pb2.Group:
            def resolve(groups: dict[str, GroupState]) -> correlation_pb2.Group:
                return group_message(self.engine.resolve(groups[request.group_id], request.note))

            return await self._on_groups([request.group_id], resolve)

        group = await self._run(context, operation)
        return correlation_pb2.ResolveGroupResponse(group=group)

    async def ExplainGroup(  # noqa: N802 (gRPC method name)
        self, request: correlation_pb2.ExplainGroupRequest, context: Context
    ) -> correlation_pb2.ExplainGroupResponse:
        """The group's story from committed state: each member and why it joined."""
        if not request.group_id:
            await abort_invalid(context, [("group_id", "is required")])
        group = await asyncio.to_thread(self.queries.get_group, request.group_id)
        if group is None:
            await abort_not_found(context, "group", request.group_id)
        return explain(group)
