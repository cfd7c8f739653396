"""Topology's answers to "how are these two resources related?", batched and cached.

The engine asks about (new event's resource, candidate's resource) pairs.
Known pairs come from a bounded LRU cache, invalidated by WatchTopology
(:mod:`corrmesh.correlation.topology_watch`) and bounded in age by a TTL for
when the watch is down; the rest of a
batch goes to Topology in one RelateResources call. When Topology does not
answer, that is "no topology signal": correlation goes on with fingerprints
and resources, the outage is logged once, and calls resume after a pause.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

import grpc

from corrmesh.correlation.plans import PairRefs, Plan, ResourcePair, pair_key
from corrmesh.correlation.strategies import Relation
from corrmesh.v1 import topology_pb2, topology_pb2_grpc

log = logging.getLogger(__name__)

#: Owner chains (Pod -> ReplicaSet -> Deployment) and siblings are 2 edges apart.
MAX_DISTANCE = 3
CACHE_ENTRIES = 50_000
CACHE_TTL_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5.0


class TopologyRelations:
    """Relation lookups for the engine; one instance per consumer."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        capacity: int = CACHE_ENTRIES,
        ttl_seconds: float = CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = topology_pb2_grpc.TopologyServiceStub(channel)
        self._capacity = capacity
        self._ttl = ttl_seconds
        self._clock = clock
        # Insertion order is age order: the oldest answers are evicted first.
        self._cache: dict[ResourcePair, tuple[Relation, float]] = {}
        # Answers for the batch in hand: kept apart so cache eviction cannot
        # take away an answer an event of this batch is about to use.
        self._batch: dict[ResourcePair, Relation] = {}
        self._now = clock()
        self._down_until = 0.0
        self._down = False
        self.calls = 0
        #: Cached pairs Topology answered UNKNOWN for (a resource it lacked).
        self._unknown: set[ResourcePair] = set()

    def forget_all(self) -> None:
        """Drops every cached answer (the topology changed)."""
        self._cache.clear()
        self._unknown.clear()

    def forget_unknown(self) -> None:
        """Drops the UNKNOWN answers (resources were added)."""
        for pair in self._unknown:
            self._cache.pop(pair, None)
        self._unknown.clear()

    def start_batch(self) -> None:
        self._batch.clear()
        self._now = self._clock()

    def lookup(self, a: str, b: str) -> Relation | None:
        """The relation of two resource keys, or None: no topology signal."""
        pair = pair_key(a, b)
        found = self._batch.get(pair)
        if found is not None:
            return found
        cached = self._cache.get(pair)
        if cached is None:
            return None
        relation, expires = cached
        if expires < self._now:
            del self._cache[pair]
            return None
        return relation

    def missing(self, pairs: PairRefs) -> PairRefs:
        """The pairs of ``pairs`` nothing is known about."""
        self._now = self._clock()
        return {p: refs for p, refs in pairs.items() if self.lookup(*p) is None}

    def missing_for(self, plan: Plan) -> PairRefs:
        """The pairs of ``plan``'s event and its neighbours that nothing is known about."""
        if not plan.neighbours:
            return {}
        self._now = self._clock()
        own, ref = plan.event.resource_key, plan.event.resource
        found: PairRefs = {}
        for key, other in plan.neighbours:
            pair = pair_key(own, key)
            if pair not in self._batch and self.lookup(*pair) is None:
                found[pair] = (ref, other)
        return found

    async def fetch(self, pairs: PairRefs) -> bool:
        """Asks Topology about ``pairs`` in one call; False when it did not answer."""
        if not pairs:
            return True
        now = self._clock()
        if now < self._down_until:
            return False
        order = list(pairs)
        request = topology_pb2.RelateResourcesRequest(
            pairs=[topology_pb2.ResourcePair(a=pairs[p][0], b=pairs[p][1]) for p in order],
            max_distance=MAX_DISTANCE,
        )
        self.calls += 1
        try:
            response = await self._stub.RelateResources(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            self._down_until = self._clock() + RETRY_AFTER_SECONDS
            if not self._down:
                self._down = True
                log.warning(
                    "topology unavailable; correlating without topology signals",
                    extra={"code": exc.code().name},
                )
            return False
        if self._down:
            self._down = False
            log.info("topology answers again")
        expires = self._clock() + self._ttl
        for answer in response.relations:
            if not 0 <= answer.index < len(order):
                continue
            pair = order[answer.index]
            relation = (int(answer.kind), int(answer.distance))
            self._batch[pair] = relation
            self._cache.pop(pair, None)
            self._cache[pair] = (relation, expires)
            if relation[0] == topology_pb2.RELATION_KIND_UNKNOWN:
                self._unknown.add(pair)
        excess = len(self._cache) - self._capacity
        if excess > 0:
            for pair in list(itertools.islice(self._cache, excess)):
                del self._cache[pair]
        return True
