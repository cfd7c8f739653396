"""Topology's answers as Correlation caches them: batched, expiring, bounded, and
"no signal" (not an error) while Topology is away."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corrmesh.correlation.plans import pair_key
from corrmesh.correlation.relations import RETRY_AFTER_SECONDS, TopologyRelations
from corrmesh.correlation.resources import resource_key
from corrmesh.correlation.topology_watch import TopologyWatch
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc
from tests.support.correlation_events import deployment
from tests.support.correlation_mesh import poll
from tests.support.inprocess import running

R = topology_pb2.RelationKind


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


async def test_topology_changes_invalidate_cached_answers(tmp_path: Path) -> None:
    api, mysql, web = refs("api", "mysql", "web")
    keys = {r.name: resource_key(r) for r in (api, mysql, web)}
    known = {pair_key(keys["api"], keys["web"]): (api, web)}
    unknown = {pair_key(keys["api"], keys["mysql"]): (api, mysql)}
    async with running(
        TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}"
    ) as (_app, address):
        channel = open_channel(address, traced=False)
        stopping = asyncio.Event()
        try:
            stub = topology_pb2_grpc.TopologyServiceStub(channel)
            dependency = topology_pb2.Dependency(to=web)
            getattr(dependency, "from").CopyFrom(api)
            await stub.UpsertDependencies(
                topology_pb2.UpsertDependenciesRequest(dependencies=[dependency])
            )
            # A TTL far longer than the test: only the watch can invalidate.
            relations = TopologyRelations(channel, ttl_seconds=3600)
            watch = TopologyWatch(channel, [relations])
            task = asyncio.create_task(watch.run(stopping))
            relations.start_batch()
            assert await relations.fetch({**known, **unknown})
            cached = relations.lookup(*next(iter(unknown)))
            assert cached is not None and cached[0] == R.Value("RELATION_KIND_UNKNOWN")
            relations.start_batch()
            assert relations.missing({**known, **unknown}) == {}

            # mysql appears with an edge from api: every cached answer may be wrong now.
            second = topology_pb2.Dependency(to=mysql)
            getattr(second, "from").CopyFrom(api)
            await stub.UpsertDependencies(
                topology_pb2.UpsertDependenciesRequest(dependencies=[second])
            )

            async def seen() -> bool:
                return watch.changes_seen >= 1

            await poll(seen)
            relations.start_batch()
            assert relations.missing({**known, **unknown}) == {**known, **unknown}
            assert await relations.fetch(unknown)
            kind, distance = relations.lookup(*next(iter(unknown))) or (0, 0)
            assert (kind, distance) == (R.Value("RELATION_KIND_DEPENDENCY"), 1)
        finally:
            stopping.set()
            await asyncio.wait_for(task, 5)
            await channel.close()


async def test_upserted_resources_drop_only_unknown_answers() -> None:
    """A resource that appears can only turn UNKNOWN into something else."""

    class Cache:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def forget_all(self) -> None:
            self.calls.append("all")

        def forget_unknown(self) -> None:
            self.calls.append("unknown")

    cache = Cache()
    channel = open_channel("127.0.0.1:1", traced=False)
    watch = TopologyWatch(channel, [cache])
    upsert = topology_pb2.TopologyChange(
        sequence=4, type=topology_pb2.CHANGE_TYPE_RESOURCE_UPSERTED
    )
    edge = topology_pb2.TopologyChange(sequence=5, type=topology_pb2.CHANGE_TYPE_EDGE_REMOVED)
    watch.apply([upsert])
    watch.apply([upsert, edge])
    watch.apply([])
    assert cache.calls == ["unknown", "all"]
    assert watch.last_sequence == 5
    await channel.close()
