"""Topology's answers as Correlation caches them: batched, expiring, bounded, and
"no signal" (not an error) while Topology is away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from corrmesh.correlation.plans import Plan, pair_key
from corrmesh.correlation.relations import RETRY_AFTER_SECONDS, TopologyRelations
from corrmesh.correlation.resources import resource_key
from corrmesh.correlation.topology_watch import TopologyWatch
from corrmesh.correlation.window import EventInfo
from corrmesh.runtime.clients import open_channel
from corrmesh.topology.server import TopologyApp
from corrmesh.v1 import event_pb2, topology_pb2, topology_pb2_grpc
from tests.support.correlation_events import deployment, event
from tests.support.correlation_mesh import poll
from tests.support.inprocess import running

R = topology_pb2.RelationKind


def refs(*names: str) -> list[event_pb2.ResourceRef]:
    return [deployment(name, cluster="") for name in names]


@asynccontextmanager
async def topology_channel(tmp_path: Path) -> AsyncIterator[tuple[grpc.aio.Channel, str]]:
    """A Topology service of its own, and a channel to it (closed afterwards)."""
    async with running(
        TopologyApp, "topology", database_url=f"sqlite:///{tmp_path / 'topology.db'}"
    ) as (_app, address):
        channel = open_channel(address, traced=False)
        try:
            yield channel, address
        finally:
            await channel.close()


async def declare(
    channel: grpc.aio.Channel, source: event_pb2.ResourceRef, target: event_pb2.ResourceRef
) -> None:
    """Declares in Topology that ``source`` depends on ``target``."""
    dependency = topology_pb2.Dependency(to=target)
    getattr(dependency, "from").CopyFrom(source)
    await topology_pb2_grpc.TopologyServiceStub(channel).UpsertDependencies(
        topology_pb2.UpsertDependenciesRequest(dependencies=[dependency])
    )


async def test_answers_are_cached_expire_and_are_bounded(tmp_path: Path) -> None:
    now = [1000.0]
    api, mysql, web, cache = refs("api", "mysql", "web", "cache")
    async with topology_channel(tmp_path) as (channel, address):
        await declare(channel, api, mysql)
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
        # Asked again with probes of its ends: whether Topology knows api and mysql.
        assert set(relations.missing(pairs)) == {
            pair_key(keys["api"], keys["mysql"]),
            (keys["api"], keys["api"]),
            (keys["mysql"], keys["mysql"]),
        }

        # Answers expire after the TTL.
        now[0] += 61
        relations.start_batch()
        assert set(relations.missing(third)) == {
            pair_key(keys["web"], keys["cache"]),
            (keys["web"], keys["web"]),
            (keys["cache"], keys["cache"]),
        }

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


def plan_for(resource: event_pb2.ResourceRef, *neighbours: event_pb2.ResourceRef) -> Plan:
    """A plan of an event on ``resource`` whose cluster recently saw ``neighbours``."""
    info = EventInfo.from_event(event(0.0, resource=resource))
    return Plan(info, [], [(resource_key(n), n) for n in neighbours])


async def test_a_resource_topology_does_not_know_is_asked_about_once(tmp_path: Path) -> None:
    now = [1000.0]
    api, mysql, ghost, phantom = refs("api", "mysql", "ghost", "phantom")
    keys = {r.name: resource_key(r) for r in (api, mysql, ghost, phantom)}
    async with topology_channel(tmp_path) as (channel, _address):
        await declare(channel, api, mysql)
        relations = TopologyRelations(channel, ttl_seconds=60, clock=lambda: now[0])
        relations.start_batch()
        # The first event on ghost: its pairs, with probes of every resource in them.
        asked = relations.missing_for(plan_for(ghost, api, mysql))
        assert set(asked) == {
            pair_key(keys["ghost"], keys["api"]),
            pair_key(keys["ghost"], keys["mysql"]),
            (keys["ghost"], keys["ghost"]),
            (keys["api"], keys["api"]),
            (keys["mysql"], keys["mysql"]),
        }
        assert asked[(keys["ghost"], keys["ghost"])] == (ghost, ghost)
        assert await relations.fetch(asked)

        # Topology lacks ghost: each pair with it is UNKNOWN here, never asked.
        relations.start_batch()
        assert relations.missing_for(plan_for(ghost, api, mysql, phantom)) == {}
        assert relations.lookup(keys["phantom"], keys["ghost"]) == (
            R.Value("RELATION_KIND_UNKNOWN"),
            0,
        )
        assert relations.missing({pair_key(keys["ghost"], keys["phantom"]): (ghost, phantom)}) == {}
        # api is known: its pairs are asked, with the probe of phantom only.
        asked = relations.missing_for(plan_for(api, mysql, phantom))
        assert set(asked) == {
            pair_key(keys["api"], keys["mysql"]),
            pair_key(keys["api"], keys["phantom"]),
            (keys["phantom"], keys["phantom"]),
        }
        assert await relations.fetch(asked)
        dependency_answer = (R.Value("RELATION_KIND_DEPENDENCY"), 1)
        assert relations.lookup(keys["api"], keys["mysql"]) == dependency_answer
        assert relations.calls == 2

        # Resources were added: ghost may exist now, so it is probed again ...
        relations.forget_unknown()
        relations.start_batch()
        assert (keys["ghost"], keys["ghost"]) in relations.missing_for(plan_for(ghost, api))
        assert await relations.fetch(relations.missing_for(plan_for(ghost, api)))
        assert relations.missing_for(plan_for(ghost, api)) == {}
        # ... and what is known of it lasts only the TTL, like any answer.
        now[0] += 61
        relations.start_batch()
        assert (keys["ghost"], keys["ghost"]) in relations.missing_for(plan_for(ghost, api))


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
            await declare(channel, api, web)
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
            await declare(channel, api, mysql)

            async def seen() -> bool:
                return watch.changes_seen >= 1

            await poll(seen)
            relations.start_batch()
            asked = relations.missing({**known, **unknown})
            assert {pair for pair in asked if pair[0] != pair[1]} == {*known, *unknown}
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
