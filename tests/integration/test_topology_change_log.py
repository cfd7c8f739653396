"""The change log behind WatchTopology: trimmed by count and by age, a resume
from a trimmed sequence refused with OUT_OF_RANGE, and observed changes kept
in order and written once the log can be written again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from corrmesh.runtime.errors import bad_request_fields
from corrmesh.runtime.streams import HeadNotifier
from corrmesh.topology import writer as writer_module
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.keys import key_of
from corrmesh.topology.messages import resource_change
from corrmesh.topology.store import ChangesTrimmedError, StoreWrite, TopologyStore
from corrmesh.topology.writer import TopologyWriter
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.topology import dependency, ref, service, topology_server, wait_for

T = topology_pb2
UPSERTED = T.CHANGE_TYPE_RESOURCE_UPSERTED


def pod_change(name: str, cluster: str = "prod", when: datetime | None = None) -> T.TopologyChange:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when or datetime.now(UTC))
    resource = T.Resource(
        ref=event_pb2.ResourceRef(cluster=cluster, kind="Pod", namespace="shop", name=name)
    )
    return resource_change(UPSERTED, resource, stamp)


def logged(store: TopologyStore, after: int = 0) -> list[tuple[int, str]]:
    return [
        (c.sequence, c.resource.ref.name or c.cluster)
        for c in store.read_changes_after(after, 1000)
    ]


@pytest.fixture
def store(database_url: str) -> Iterator[TopologyStore]:
    opened = TopologyStore(database_url)
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


def test_trimming_by_count_keeps_the_newest_and_refuses_resuming_before_them(
    store: TopologyStore,
) -> None:
    store.apply(StoreWrite(changes=[pod_change(f"p{i}") for i in range(1, 11)]))
    assert store.trim(4, None) == 6
    assert logged(store) == [(7, "p7"), (8, "p8"), (9, "p9"), (10, "p10")]
    assert logged(store, 6) == logged(store)  # nothing after 6 is missing
    with pytest.raises(ChangesTrimmedError) as caught:
        store.read_changes_after(5, 10)
    assert (caught.value.after, caught.value.oldest) == (5, 7)
    # However old the changes, the newest stays: the head never moves back.
    assert store.trim(0, datetime.now(UTC) + timedelta(days=1)) == 3
    assert logged(store) == [(10, "p10")]
    assert store.apply(StoreWrite(changes=[pod_change("p11")])) == [11]


def test_trimming_by_age_removes_only_older_changes(store: TopologyStore) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    changes = [pod_change(f"old{i}", when=old) for i in range(3)]
    changes += [pod_change(f"new{i}") for i in range(2)]
    store.apply(StoreWrite(changes=changes))
    assert store.trim(0, datetime.now(UTC) - timedelta(days=1)) == 3
    assert logged(store) == [(4, "new0"), (5, "new1")]
    assert store.trim(1000, datetime.now(UTC) - timedelta(days=1)) == 0


async def test_a_watch_resuming_from_a_trimmed_change_is_told_to_relist(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "TRIM_EVERY_CHANGES", 1)
    chain = [
        dependency(service("frontend"), service("api")),
        dependency(service("api"), ref("Deployment", "mysql")),
    ]
    async with topology_server(database_url, topology_changes_max_count=3) as (app, stub):
        # frontend, api, mysql and two edges: five changes, the newest three kept.
        await stub.UpsertDependencies(T.UpsertDependenciesRequest(dependencies=chain))
        assert app.notifier.head == 5
        assert [sequence for sequence, _ in logged(app.store)] == [3, 4, 5]

        call = stub.WatchTopology(T.WatchTopologyRequest(after_sequence=1))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        error = caught.value
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "after_sequence 1" in (error.details() or "")
        assert bad_request_fields(error) == ["after_sequence"]
        status = rpc_status.from_call(error)
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert any(d.Unpack(info) for d in status.details if d.Is(info.DESCRIPTOR))
        assert info.reason == "CHANGES_TRIMMED" and info.metadata["oldest_sequence"] == "3"

        for after in (0, 2):  # from the oldest kept, or right before it
            call = stub.WatchTopology(T.WatchTopologyRequest(after_sequence=after))
            response = await asyncio.wait_for(call.read(), 10)
            call.cancel()
            assert isinstance(response, T.WatchTopologyResponse)
            assert [c.sequence for c in response.changes] == [3, 4, 5]


@contextmanager
def change_log_away(store: TopologyStore) -> Iterator[None]:
    """The change log table is gone (renamed) inside the block: every write to
    it fails, as with a database refusing them."""
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE topology_changes RENAME TO topology_changes_away")
    try:
        yield
    finally:
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                "ALTER TABLE topology_changes_away RENAME TO topology_changes"
            )


def observe(
    graph: TopologyGraph, *changes: T.TopologyChange
) -> Callable[[], list[T.TopologyChange]]:
    """An ``apply`` for apply_observed: puts the changes' resources in the graph."""

    def apply() -> list[T.TopologyChange]:
        for change in changes:
            graph.upsert_resource(change.resource)
        return list(changes)

    return apply


@pytest.fixture
async def writer(
    store: TopologyStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TopologyWriter]:
    """A writer over an empty graph and ``store`` that retries quickly."""
    monkeypatch.setattr(writer_module, "RETRY_INITIAL_SECONDS", 0.02)
    monkeypatch.setattr(writer_module, "RETRY_MAX_SECONDS", 0.05)
    started = TopologyWriter(TopologyGraph(), store, HeadNotifier())
    try:
        yield started
    finally:
        await started.close()


async def test_observed_changes_wait_in_order_while_the_log_cannot_be_written(
    store: TopologyStore, writer: TopologyWriter
) -> None:
    graph, notifier = writer.graph, writer.notifier
    await writer.apply_observed(observe(graph, pod_change("a")))
    await writer.flush()
    with change_log_away(store):
        await writer.apply_observed(observe(graph, pod_change("b")))
        await writer.apply_observed(observe(graph, pod_change("c")))
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await writer.flush()
        # The graph follows the cluster; the log holds them back, in order.
        assert key_of(pod_change("c").resource.ref) in graph.resources
        assert [c.resource.ref.name for c in writer.unlogged] == ["b", "c"]
        # A declared write cannot jump the queue: it fails, the graph unchanged.
        with pytest.raises(Exception):  # noqa: B017
            await writer.upsert_dependencies([dependency(service("x"), service("y"))])
        assert key_of(service("x")) not in graph.resources
        assert [c.resource.ref.name for c in writer.unlogged] == ["b", "c"]
        await asyncio.sleep(0.1)  # retries fail meanwhile
        assert notifier.head == 1

    # The retry writes them once the table is back, then the rest follows.
    async def drained() -> bool:
        return not writer.unlogged and notifier.head == 3

    await wait_for(drained)
    await writer.upsert_dependencies([dependency(service("x"), service("y"))])
    assert logged(store) == [(1, "a"), (2, "b"), (3, "c"), (4, "x"), (5, "y"), (6, "")]


async def test_a_queue_grown_too_long_becomes_one_resync_per_cluster(
    store: TopologyStore, writer: TopologyWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_UNLOGGED", 3)
    graph = writer.graph
    with change_log_away(store):
        for name, cluster in (("a", "eu"), ("b", "us"), ("c", "eu"), ("d", "eu")):
            await writer.apply_observed(observe(graph, pod_change(name, cluster)))
        assert [(c.type, c.cluster) for c in writer.unlogged] == [
            (T.CHANGE_TYPE_RESYNCED, "eu"),
            (T.CHANGE_TYPE_RESYNCED, "us"),
        ]
    await writer.flush()
    changes = store.read_changes_after(0, 10)
    assert [(c.sequence, c.type, c.cluster) for c in changes] == [
        (1, T.CHANGE_TYPE_RESYNCED, "eu"),
        (2, T.CHANGE_TYPE_RESYNCED, "us"),
    ]
