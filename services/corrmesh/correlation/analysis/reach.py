"""Where failure travels around a group's resources, asked of Topology and cached.

For each resource the analysis needs its failure reach (Topology's
``GetImpact`` walk: every resource its failure takes down, with the distance)
and, to find silent causes, its direct neighbours (``ListNeighbors``). Both
answers are cached per resource, since the same Pods turn up in group after
group; WatchTopology invalidates them (:mod:`corrmesh.correlation.topology_watch`)
and ``ttl_seconds`` bounds their age when the watch is down. The blast radius
listed on a group is the same walk from its root cause, nearly always among the
resources just asked about: it comes from that cache too, and a root Topology
does not know costs no call at all. When
Topology does not answer, the analysis goes on without topology (the ranking
says how) and asks again after a pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from corrmesh.correlation.analysis.facts import node_id
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc

log = logging.getLogger(__name__)

#: How far the failure walk goes: an owner chain plus a dependency or two.
REACH_DEPTH = 4
CACHE_TTL_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5.0
#: Calls to Topology in flight at once.
CONCURRENCY = 8

_Impact = topology_pb2.GetImpactResponse


class TopologyReach:
    """Failure reach and neighbours of resources, from Topology."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        ttl_seconds: float = CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = topology_pb2_grpc.TopologyServiceStub(channel)
        self._ttl = ttl_seconds
        self._clock = clock
        #: node id -> (reached node id -> distance, when, Topology's whole answer
        #: or None when it does not know the resource).
        self._reach: dict[str, tuple[dict[str, int], float, _Impact | None]] = {}
        self._neighbours: dict[str, tuple[list[event_pb2.ResourceRef], float]] = {}
        #: The refs Topology used for each node id (kinds in its own case).
        self.refs: dict[str, event_pb2.ResourceRef] = {}
        self._down_until = 0.0
        self._limit = asyncio.Semaphore(CONCURRENCY)

    def forget_all(self) -> None:
        """Drops every cached answer (the topology changed)."""
        self._reach.clear()
        self._neighbours.clear()

    def forget_unknown(self) -> None:
        """Drops the answers about resources Topology did not know."""
        self._reach = {node: entry for node, entry in self._reach.items() if entry[0]}
        self._neighbours = {node: entry for node, entry in self._neighbours.items() if entry[0]}

    def _available(self) -> bool:
        return self._clock() >= self._down_until

    def _unavailable(self, error: grpc.aio.AioRpcError) -> None:
        if self._available():
            log.warning("Topology did not answer (%s); analysing without it", error.code().name)
        self._down_until = self._clock() + RETRY_AFTER_SECONDS

    def _unknown(self, error: grpc.aio.AioRpcError) -> bool:
        """True when Topology answered that it does not know the resource; any
        other failure marks it unavailable for a while."""
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return True
        self._unavailable(error)
        return False

    def _fresh(self, cached: tuple[Any, ...] | None) -> bool:
        return cached is not None and self._clock() - cached[1] < self._ttl

    async def reach(self, refs: Iterable[event_pb2.ResourceRef]) -> dict[str, dict[str, int]]:
        """node id -> (node id its failure reaches -> distance), for the refs Topology knows."""
        wanted = {node_id(ref): ref for ref in refs if ref.name}
        missing = [ref for node, ref in wanted.items() if not self._fresh(self._reach.get(node))]
        if missing and self._available():
            await asyncio.gather(*(self._fetch_reach(ref) for ref in missing))
        found = {}
        for node in wanted:
            cached = self._reach.get(node)
            if cached is not None and cached[0]:
                found[node] = cached[0]
        return found

    async def _fetch_reach(self, ref: event_pb2.ResourceRef) -> None:
        node = node_id(ref)
        async with self._limit:
            try:
                reply = await self._stub.GetImpact(
                    topology_pb2.GetImpactRequest(ref=ref, max_depth=REACH_DEPTH),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as error:
                if self._unknown(error):
                    self._reach[node] = ({}, self._clock(), None)
                return
        reached = {}
        for item in reply.impacted:
            other = node_id(item.resource)
            reached[other] = item.distance
            self.refs.setdefault(other, item.resource)
        self.refs.setdefault(node, reply.root if reply.root.name else ref)
        self._reach[node] = (reached, self._clock(), reply)

    async def neighbours(
        self, refs: Iterable[event_pb2.ResourceRef]
    ) -> dict[str, event_pb2.ResourceRef]:
        """node id -> ref of every direct neighbour of ``refs`` in Topology."""
        wanted = {node_id(ref): ref for ref in refs if ref.name}
        missing = [
            ref for node, ref in wanted.items() if not self._fresh(self._neighbours.get(node))
        ]
        if missing and self._available():
            await asyncio.gather(*(self._fetch_neighbours(ref) for ref in missing))
        found: dict[str, event_pb2.ResourceRef] = {}
        for node in wanted:
            cached = self._neighbours.get(node)
            for ref in cached[0] if cached is not None else ():
                found.setdefault(node_id(ref), ref)
        return found

    async def _fetch_neighbours(self, ref: event_pb2.ResourceRef) -> None:
        async with self._limit:
            try:
                reply = await self._stub.ListNeighbors(
                    topology_pb2.ListNeighborsRequest(
                        ref=ref, depth=1, direction=topology_pb2.DIRECTION_BOTH
                    ),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as error:
                if self._unknown(error):
                    self._neighbours[node_id(ref)] = ([], self._clock())
                return
        found = [n.resource.ref for n in reply.neighbors]
        self._neighbours[node_id(ref)] = (found, self._clock())

    async def impact(self, ref: event_pb2.ResourceRef, max_depth: int) -> _Impact | None:
        """Topology's GetImpact for ``ref``; None when it cannot say. At
        REACH_DEPTH the answer is the cached reach walk's, fetched if missing."""
        if max_depth == REACH_DEPTH and ref.name:
            await self.reach([ref])
            cached = self._reach.get(node_id(ref))
            return cached[2] if cached is not None and self._fresh(cached) else None
        if not self._available():
            return None
        try:
            return await self._stub.GetImpact(
                topology_pb2.GetImpactRequest(ref=ref, max_depth=max_depth),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            self._unknown(error)
            return None
