"""Topology's answers to "how are these two resources related?", batched and cached.

The engine asks about (new event's resource, candidate's resource) pairs.
Known pairs come from a bounded LRU cache, invalidated by WatchTopology
(:mod:`corrmesh.correlation.topology_watch`) and bounded in age by a TTL for
when the watch is down; the rest of a
batch goes to Topology in one RelateResources call. When Topology does not
answer, that is "no topology signal": correlation goes on with fingerprints
and resources, the outage is logged once, and calls resume after a pause.

**Resources Topology does not know.** Every pair with such a resource is
UNKNOWN, and events of alert sources, DICOM nodes or a cluster Topology does
not watch bring many of them. So each call also carries the pair of the
event's resource with itself (and of each neighbour not yet probed): Topology
answers SAME_RESOURCE when it knows the resource and UNKNOWN when not. A
resource it does not know is remembered like an answer (same TTL, dropped
when resources are added) and its pairs are answered UNKNOWN here without
asking; a mesh full of such events asks once per resource, not per pair.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

import grpc

from corrmesh.correlation.plans import PairRefs, Plan, ResourcePair, pair_key
from corrmesh.correlation.resources import resource_key
from corrmesh.correlation.strategies import Relation
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc

log = logging.getLogger(__name__)

#: Owner chains (Pod -> ReplicaSet -> Deployment) and siblings are 2 edges apart.
MAX_DISTANCE = 3
CACHE_ENTRIES = 50_000
CACHE_TTL_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5.0
_UNKNOWN: Relation = (topology_pb2.RELATION_KIND_UNKNOWN, 0)


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
        #: Resource key -> (Topology knows it, until when that holds); age order.
        self._presence: dict[str, tuple[bool, float]] = {}

    def forget_all(self) -> None:
        """Drops every cached answer (the topology changed)."""
        self._cache.clear()
        self._unknown.clear()
        self._presence.clear()

    def forget_unknown(self) -> None:
        """Drops the UNKNOWN answers (resources were added)."""
        for pair in self._unknown:
            self._cache.pop(pair, None)
        self._unknown.clear()
        for key in [k for k, (known, _) in self._presence.items() if not known]:
            del self._presence[key]

    def _known(self, key: str) -> bool | None:
        """Whether Topology knows the resource ``key``; None when not probed (or expired)."""
        found = self._presence.get(key)
        if found is None:
            return None
        if found[1] < self._now:
            del self._presence[key]
            return None
        return found[0]

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
        if cached is not None:
            relation, expires = cached
            if expires >= self._now:
                return relation
            del self._cache[pair]
        if self._known(a) is False or self._known(b) is False:
            return _UNKNOWN
        return None

    def missing(self, pairs: PairRefs) -> PairRefs:
        """The pairs of ``pairs`` nothing is known about, with a probe for each
        of their resources not yet probed (see the module docstring)."""
        self._now = self._clock()
        found: PairRefs = {}
        for pair, refs in pairs.items():
            if self.lookup(*pair) is None:
                found[pair] = refs
                first = resource_key(refs[0]) == pair[0]
                self.add_probe(found, pair[0], refs[0] if first else refs[1])
                self.add_probe(found, pair[1], refs[1] if first else refs[0])
        return found

    def missing_for(self, plan: Plan) -> PairRefs:
        """The pairs of ``plan``'s event and its neighbours that nothing is known
        about, with the probes of their resources (see the module docstring)."""
        if not plan.neighbours:
            return {}
        self._now = self._clock()
        own, ref = plan.event.resource_key, plan.event.resource
        if self._known(own) is False:
            return {}
        found: PairRefs = {}
        for key, other in plan.neighbours:
            pair = pair_key(own, key)
            if pair not in self._batch and self.lookup(*pair) is None:
                found[pair] = (ref, other)
                self.add_probe(found, key, other)
        if found:
            self.add_probe(found, own, ref)
        return found

    def add_probe(self, pairs: PairRefs, key: str, ref: event_pb2.ResourceRef) -> None:
        """Adds the pair of ``key`` with itself to ``pairs`` unless it is known
        whether Topology knows the resource (or ``key`` names none)."""
        if key and (key, key) not in pairs and self._known(key) is None:
            pairs[(key, key)] = (ref, ref)

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
            if pair[0] == pair[1]:  # a probe: does Topology know this resource?
                self._presence.pop(pair[0], None)
                self._presence[pair[0]] = (relation[0] != _UNKNOWN[0], expires)
                continue
            self._batch[pair] = relation
            self._cache.pop(pair, None)
            self._cache[pair] = (relation, expires)
            if relation[0] == topology_pb2.RELATION_KIND_UNKNOWN:
                self._unknown.add(pair)
        excess = len(self._cache) - self._capacity
        if excess > 0:
            for pair in list(itertools.islice(self._cache, excess)):
                del self._cache[pair]
        excess = len(self._presence) - self._capacity
        if excess > 0:
            for key in list(itertools.islice(self._presence, excess)):
                del self._presence[key]
        return True
