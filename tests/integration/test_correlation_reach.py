"""The analysis's view of Topology (TopologyReach) against a real Topology server:
the blast radius listed on a group comes from the failure walk already cached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from corrmesh.correlation.analysis.facts import node_id
from corrmesh.correlation.analysis.reach import REACH_DEPTH, TopologyReach
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import topology_pb2, topology_pb2_grpc
from tests.support.inprocess import running
from tests.support.topology import dependency, ref, service

GET_IMPACT = "/corrmesh.v1.TopologyService/GetImpact"
MYSQL, API, FRONTEND = ref("Deployment", "mysql"), service("api"), service("frontend")


class CountingCalls(grpc.aio.UnaryUnaryClientInterceptor):
    """Counts the unary calls a channel makes, by method."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        self.calls[method.decode() if isinstance(method, bytes) else method] += 1
        return await continuation(client_call_details, request)


def impacted(answer: topology_pb2.GetImpactResponse | None) -> list[str]:
    assert answer is not None
    return [item.resource.name for item in answer.impacted]


async def test_blast_radius_reuses_the_failure_walk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'topology.db'}"
    async with running(TopologyApp, "topology", database_url=url) as (_app, address):
        counting = CountingCalls()
        async with grpc.aio.insecure_channel(address, interceptors=[counting]) as channel:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            await stub.UpsertDependencies(
                topology_pb2.UpsertDependenciesRequest(
                    dependencies=[dependency(FRONTEND, API), dependency(API, MYSQL)]
                )
            )
            reach = TopologyReach(channel)

            assert await reach.reach([MYSQL]) == {
                node_id(MYSQL): {node_id(API): 1, node_id(FRONTEND): 2}
            }
            asked = counting.calls[GET_IMPACT]
            assert asked == 1
            # The root cause's blast radius: the walk just made, no second call,
            # and what Topology itself answers.
            radius = await reach.impact(MYSQL, REACH_DEPTH)
            assert counting.calls[GET_IMPACT] == asked
            direct = await stub.GetImpact(
                topology_pb2.GetImpactRequest(ref=MYSQL, max_depth=REACH_DEPTH)
            )
            assert radius == direct and impacted(radius) == ["api", "frontend"]
            asked += 1

            # A root not asked about before: one call, then cached.
            assert impacted(await reach.impact(API, REACH_DEPTH)) == ["frontend"]
            assert impacted(await reach.impact(API, REACH_DEPTH)) == ["frontend"]
            assert counting.calls[GET_IMPACT] == asked + 1
            asked += 1

            # A resource Topology does not know: asked once, then no call at all.
            ghost = ref("Deployment", "ghost")
            assert await reach.impact(ghost, REACH_DEPTH) is None
            assert await reach.impact(ghost, REACH_DEPTH) is None
            assert counting.calls[GET_IMPACT] == asked + 1
            asked += 1

            # After the topology changed, the walk is asked for again.
            reach.forget_all()
            assert impacted(await reach.impact(MYSQL, REACH_DEPTH)) == ["api", "frontend"]
            assert counting.calls[GET_IMPACT] == asked + 1
            asked += 1

            # Another depth is another question.
            assert impacted(await reach.impact(MYSQL, 1)) == ["api"]
            assert counting.calls[GET_IMPACT] == asked + 1
