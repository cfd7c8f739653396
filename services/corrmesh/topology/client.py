"""A thin client for the Correlation service: relate many resource pairs at once."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from corrmesh.topology.validation import MAX_PAIRS
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc

PairLike = topology_pb2.ResourcePair | tuple[event_pb2.ResourceRef, event_pb2.ResourceRef]


async def relate(
    channel: grpc.aio.Channel,
    pairs: Iterable[PairLike],
    max_distance: int = 0,
    timeout: float | None = None,
) -> list[topology_pb2.ResourceRelation]:
    """One relation per pair, in order (``index`` is the pair's position in ``pairs``).

    Pairs are sent in batches of at most the server's limit; ``max_distance``
    0 lets the server choose its default.
    """
    stub = topology_pb2_grpc.TopologyServiceStub(channel)
    messages = [
        pair
        if isinstance(pair, topology_pb2.ResourcePair)
        else topology_pb2.ResourcePair(a=pair[0], b=pair[1])
        for pair in pairs
    ]
    relations: list[topology_pb2.ResourceRelation] = []
    for start in range(0, len(messages), MAX_PAIRS):
        request = topology_pb2.RelateResourcesRequest(
            pairs=messages[start : start + MAX_PAIRS], max_distance=max_distance
        )
        response = await stub.RelateResources(request, timeout=timeout)
        for relation in response.relations:
            relation.index += start
            relations.append(relation)
    return relations
