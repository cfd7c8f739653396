"""TopologyService RPCs over the in-memory graph, its writer and its change log."""

# gRPC method names are CamelCase by contract.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.rpc import code_pb2, status_pb2

from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    bad_request_status,
    error_info_status,
)
from corrmesh.runtime.streams import DEFAULT_BATCH, Batch, HeadNotifier, follow
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.impact import impact_response
from corrmesh.topology.keys import Key, describe
from corrmesh.topology.listing import list_resources
from corrmesh.topology.messages import change_matches, edge_message
from corrmesh.topology.relate import (
    DEFAULT_MAX_DISTANCE,
    MAX_DISTANCE,
    Relator,
    relations_response,
)
from corrmesh.topology.store import ChangesTrimmedError, TopologyStore
from corrmesh.topology.validation import (
    DEFAULT_IMPACT_DEPTH,
    DEFAULT_PATH_DEPTH,
    MAX_PAIRS,
    check_dependencies,
    check_depth,
    check_edge_types,
    check_ref,
)
from corrmesh.topology.walks import BOTH, find_path, neighbors, owner_chain
from corrmesh.topology.writer import SelfDependencyError, TopologyWriter
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc

Context = grpc.aio.ServicerContext  # type: ignore[type-arg]


def trimmed_status(exc: ChangesTrimmedError) -> status_pb2.Status:
    """OUT_OF_RANGE for a watch resuming before what the change log keeps: the
    client lists the graph again and watches from a sequence it then gets."""
    message = (
        f"after_sequence {exc.after} is older than the change log keeps (oldest kept: "
        f"{exc.oldest}); list the graph again and watch from 0"
    )
    status = error_info_status(
        code_pb2.OUT_OF_RANGE,
        "CHANGES_TRIMMED",
        message,
        after_sequence=str(exc.after),
        oldest_sequence=str(exc.oldest),
    )
    field = bad_request_status([("after_sequence", "is older than the oldest change kept")])
    status.details.extend(field.details)
    return status


class TopologyServicer(topology_pb2_grpc.TopologyServiceServicer):
    """Reads answer from the graph on the event loop; writes go through the writer."""

    def __init__(
        self,
        graph: TopologyGraph,
        writer: TopologyWriter,
        store: TopologyStore,
        notifier: HeadNotifier,
        stopping: asyncio.Event,
    ) -> None:
        self.graph = graph
        self.writer = writer
        self.store = store
        self.notifier = notifier
        self.stopping = stopping
        self.relator = Relator(graph)

    async def _resolve(self, context: Context, ref: event_pb2.ResourceRef) -> Key:
        key = self.graph.resolve(ref)
        if key is None:
            await abort_not_found(context, "Resource", describe(ref))
        return key

    async def GetResource(
        self, request: topology_pb2.GetResourceRequest, context: Context
    ) -> topology_pb2.GetResourceResponse:
        violations = FieldViolations()
        check_ref(request.ref, request.HasField("ref"), "ref", violations)
        if violations:
            await abort_invalid(context, violations)
        key = await self._resolve(context, request.ref)
        return topology_pb2.GetResourceResponse(resource=self.graph.resources[key])

    async def ListResources(
        self, request: topology_pb2.ListResourcesRequest, context: Context
    ) -> topology_pb2.ListResourcesResponse:
        violations = FieldViolations()
        response = list_resources(self.graph, request, violations)
        if violations:
            await abort_invalid(context, violations)
        return response

    async def GetOwnerChain(
        self, request: topology_pb2.GetOwnerChainRequest, context: Context
    ) -> topology_pb2.GetOwnerChainResponse:
        violations = FieldViolations()
        check_ref(request.ref, request.HasField("ref"), "ref", violations)
        if violations:
            await abort_invalid(context, violations)
        key = await self._resolve(context, request.ref)
        chain = [self.graph.resources[k] for k in owner_chain(self.graph, key)]
        return topology_pb2.GetOwnerChainResponse(chain=chain)

    async def ListNeighbors(
        self, request: topology_pb2.ListNeighborsRequest, context: Context
    ) -> topology_pb2.ListNeighborsResponse:
        violations = FieldViolations()
        check_ref(request.ref, request.HasField("ref"), "ref", violations)
        check_edge_types(request.edge_types, "edge_types", violations)
        check_depth(request.depth, "depth", violations)
        if request.direction not in topology_pb2.Direction.values():
            violations.add("direction", "must be a known direction")
        if violations:
            await abort_invalid(context, violations)
        key = await self._resolve(context, request.ref)
        # DIRECTION_UNSPECIFIED follows edges both ways: "what is next to this".
        direction = request.direction or BOTH
        hits = neighbors(self.graph, key, request.edge_types, direction, request.depth or 1)
        return topology_pb2.ListNeighborsResponse(
            neighbors=[
                topology_pb2.Neighbor(
                    resource=self.graph.resources[hit.key],
                    edge=edge_message(self.graph, hit.edge),
                    distance=hit.distance,
                )
                for hit in hits
            ]
        )

    async def FindPath(
        self, request: topology_pb2.FindPathRequest, context: Context
    ) -> topology_pb2.FindPathResponse:
        violations = FieldViolations()
        source_ref, target_ref = getattr(request, "from"), request.to
        check_ref(source_ref, request.HasField("from"), "from", violations)
        check_ref(target_ref, request.HasField("to"), "to", violations)
        check_depth(request.max_depth, "max_depth", violations)
        check_edge_types(request.edge_types, "edge_types", violations)
        if violations:
            await abort_invalid(context, violations)
        source = await self._resolve(context, source_ref)
        target = await self._resolve(context, target_ref)
        path = find_path(
            self.graph, source, target, request.max_depth or DEFAULT_PATH_DEPTH, request.edge_types
        )
        if path is None:
            return topology_pb2.FindPathResponse(found=False)
        return topology_pb2.FindPathResponse(
            found=True, edges=[edge_message(self.graph, edge) for edge in path]
        )

    async def GetImpact(
        self, request: topology_pb2.GetImpactRequest, context: Context
    ) -> topology_pb2.GetImpactResponse:
        violations = FieldViolations()
        check_ref(request.ref, request.HasField("ref"), "ref", violations)
        check_depth(request.max_depth, "max_depth", violations)
        for index, kind in enumerate(request.kinds):
            if not kind:
                violations.add(f"kinds[{index}]", "must not be empty")
        if violations:
            await abort_invalid(context, violations)
        key = await self._resolve(context, request.ref)
        depth = request.max_depth or DEFAULT_IMPACT_DEPTH
        return impact_response(self.graph, key, depth, set(request.kinds))

    async def RelateResources(
        self, request: topology_pb2.RelateResourcesRequest, context: Context
    ) -> topology_pb2.RelateResourcesResponse:
        violations = FieldViolations()
        pairs = request.pairs
        if len(pairs) > MAX_PAIRS:
            violations.add("pairs", f"must contain at most {MAX_PAIRS} pairs")
        if request.max_distance < 0 or request.max_distance > MAX_DISTANCE:
            violations.add("max_distance", f"must be between 0 and {MAX_DISTANCE}")
        if violations:
            await abort_invalid(context, violations)
        max_distance = request.max_distance or DEFAULT_MAX_DISTANCE
        # The hot path: one pass relates every pair; only pairs with an end
        # named without a uid can be invalid, and only those are checked in full.
        relations, without_uid = self.relator.relate_pairs(pairs, max_distance)
        for index in without_uid:
            pair = pairs[index]
            a, b = pair.a, pair.b
            if not (a.uid or (a.kind and a.name)) or not pair.HasField("a"):
                check_ref(a, pair.HasField("a"), f"pairs[{index}].a", violations)
            if not (b.uid or (b.kind and b.name)) or not pair.HasField("b"):
                check_ref(b, pair.HasField("b"), f"pairs[{index}].b", violations)
        if violations:
            await abort_invalid(context, violations)
        return relations_response(relations)

    async def UpsertDependencies(
        self, request: topology_pb2.UpsertDependenciesRequest, context: Context
    ) -> topology_pb2.UpsertDependenciesResponse:
        violations = FieldViolations()
        check_dependencies(request.dependencies, violations)
        if violations:
            await abort_invalid(context, violations)
        try:
            count = await self.writer.upsert_dependencies(request.dependencies)
        except SelfDependencyError as exc:
            violations.add(f"dependencies[{exc.index}].to", "names the same resource as `from`")
            await abort_invalid(context, violations)
        return topology_pb2.UpsertDependenciesResponse(upserted_count=count)

    async def DeleteDependency(
        self, request: topology_pb2.DeleteDependencyRequest, context: Context
    ) -> topology_pb2.DeleteDependencyResponse:
        violations = FieldViolations()
        dependent, dependency = getattr(request, "from"), request.to
        check_ref(dependent, request.HasField("from"), "from", violations)
        check_ref(dependency, request.HasField("to"), "to", violations)
        if violations:
            await abort_invalid(context, violations)
        if not await self.writer.delete_dependency(dependent, dependency):
            await abort_not_found(
                context, "Dependency", f"{describe(dependent)} -> {describe(dependency)}"
            )
        return topology_pb2.DeleteDependencyResponse()

    async def WatchTopology(
        self, request: topology_pb2.WatchTopologyRequest, context: Context
    ) -> AsyncIterator[topology_pb2.WatchTopologyResponse]:
        violations = FieldViolations()
        if request.after_sequence < 0:
            violations.add("after_sequence", "must not be negative")
        for field, values in (("clusters", request.clusters), ("kinds", request.kinds)):
            if len(values) > 1000:
                violations.add(field, "must contain at most 1000 entries")
        if violations:
            await abort_invalid(context, violations)
        clusters, kinds = set(request.clusters), set(request.kinds)

        async def read_after(after: int, limit: int) -> Batch[topology_pb2.TopologyChange]:
            try:
                changes = await asyncio.to_thread(self.store.read_changes_after, after, limit)
            except ChangesTrimmedError as exc:
                await abort(context, trimmed_status(exc))
            through = changes[-1].sequence if changes else after
            matched = [c for c in changes if change_matches(c, clusters, kinds)]
            return Batch(matched, through)

        start = self.notifier.head if request.from_now else request.after_sequence
        batches = follow(read_after, start, self.notifier, self.stopping, DEFAULT_BATCH)
        async for batch in batches:
            # Empty batches carry no sequence a client could save: skip them.
            if batch.items:
                yield topology_pb2.WatchTopologyResponse(changes=batch.items)
