"""Topology's answers as Correlation caches them: batched, expiring, bounded, and
"no signal" (not an error) while Topology is away."""

from __future__ import annotations

from pathlib import Path

from corrmesh.correlation.plans import pair_key
from corrmesh.correlation.relations import RETRY_AFTER_SECONDS, TopologyRelations
from corrmesh.correlation.resources import resource_key
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc
from tests.support.correlation_events import deployment
from tests.support.inprocess import running


def refs(*names: str) -> list[event_pb2.ResourceRef]:
    return [deployment(name, cluster="") for name in names]


async def test_answers_are_cached_expire_and_are_bounded(tmp_path: Path) -> None:
    now = [1000.0]
    api, mysql, web, cache = refs("api", "mysql", "web", "cache")
    async with running(
        TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}"
    ) as (_app, address):
        channel = open_channel(address, traced=False)
        try:
            dependency = topology_pb2.Dependency(to=mysql)
            getattr(dependency, "from").CopyFrom(api)
            await topology_pb2_grpc.TopologyServiceStub(channel).UpsertDependencies(
                topology_pb2.UpsertDependenciesRequest(dependencies=[dependency])
            )
            relations = TopologyRelations(channel, capacity=2, ttl_seconds=60, clock=lambda: now[0])
            keys = {r.name: resource_key(r) for r in (api, mysql, web, cache)}
            pairs = {
                pair_key(keys["api"], keys["mysql"]): (api, mysql),
                pair_key(keys["api"], keys["web"]): (api, web),
            }
            relations.start_batch()
            assert await relations.fetch(pairs)
            kind, distance = relations.lookup(keys["mysql"], keys["api"]) or (0, 0)
            assert (kind, distance) == (topology_pb2.RELATION_KIND_DEPENDENCY, 1)
            assert relations.missing(pairs) == {}, "both answered, even 'unrelated'"
            assert relations.calls == 1

            # A third answer pushes the oldest out of the cache (capacity 2).
            third = {pair_key(keys["web"], keys["cache"]): (web, cache)}
            assert await relations.fetch(third)
            relations.start_batch()
            assert list(relations.missing(pairs)) == [pair_key(keys["api"], keys["mysql"])]

            # Answers expire after the TTL.
            now[0] += 61
            relations.start_batch()
            assert relations.missing(third) == third
        finally:
            await channel.close()

    # Topology gone: no signal, logged once, and no call again before the pause ends.
    channel = open_channel(address, traced=False)
    try:
        relations = TopologyRelations(channel, clock=lambda: now[0])
        assert not await relations.fetch(pairs)
        assert not await relations.fetch(pairs)
        assert relations.calls == 1
        now[0] += RETRY_AFTER_SECONDS + 1
        assert not await relations.fetch(pairs)
        assert relations.calls == 2
    finally:
        await channel.close()
