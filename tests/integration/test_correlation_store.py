"""Correlation's store on SQLite and PostgreSQL: round trip and reload."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from corrmesh.correlation.camera_travel import KNOWN_AFTER
from corrmesh.correlation.config import default_config, duration_us
from corrmesh.correlation.engine import CorrelationEngine
from corrmesh.correlation.models import EdgeRow, GroupMemberRow, GroupUpdateRow
from corrmesh.correlation.queries import GroupFilter, GroupQueries
from corrmesh.correlation.store import CorrelationStore
from corrmesh.v1 import event_pb2
from tests.support.correlation_events import (
    event,
    incident_storm,
    no_topology,
    pending_pod_events,
    pod_event,
    site_crossing,
    site_passes,
)


def run(store: CorrelationStore, events, batch: int, reload_each_batch: bool) -> None:
    config = default_config()
    engine = CorrelationEngine(config)
    for start in range(0, len(events), batch):
        if reload_each_batch:
            engine = CorrelationEngine(config)
            _offset, state = store.load_state(
                duration_us(config.temporal_window), duration_us(config.allowed_lateness)
            )
            engine.restore(state)
        part = events[start : start + batch]
        for built in part:
            engine.apply(engine.prepare(built), no_topology)
        store.commit_batch(engine.take_changes(), part[-1].sequence)
        engine.committed()


def memberships(store: CorrelationStore) -> set[frozenset[str]]:
    with store.sessions() as session:
        rows = session.execute(select(GroupMemberRow.group_id, GroupMemberRow.event_id)).all()
    groups: dict[str, set[str]] = {}
    for group_id, event_id in rows:
        groups.setdefault(group_id, set()).add(event_id)
    return {frozenset(g) for g in groups.values()}


@contextmanager
def replayed_twice(
    database_url: str, tmp_path: Path, events: list[event_pb2.Event], batch: int
) -> Iterator[tuple[set[frozenset[str]], CorrelationStore]]:
    """Runs ``events`` uninterrupted into a SQLite reference, and with the engine
    reloaded every ``batch`` events into ``database_url``: yields the reference's
    groups and the reloaded run's store."""
    reference = CorrelationStore(f"sqlite:///{tmp_path / 'reference.db'}")
    store = CorrelationStore(database_url)
    try:
        reference.migrate()
        store.migrate()
        run(reference, events, batch=500, reload_each_batch=False)
        run(store, events, batch=batch, reload_each_batch=True)
        yield memberships(reference), store
    finally:
        reference.close()
        store.close()


def test_reloading_between_batches_gives_the_uninterrupted_groups(
    database_url: str, tmp_path: Path
) -> None:
    with replayed_twice(database_url, tmp_path, incident_storm(900), batch=37) as (expected, store):
        assert len(expected) > 50
        assert memberships(store) == expected
        queries = GroupQueries(store.sessions)
        counters = queries.counters()
        assert counters.events_in == 900
        assert counters.consumer_sequence == 900
        assert counters.groups == len(expected)
        with store.sessions() as session:
            edges = session.execute(select(EdgeRow.from_event_id, EdgeRow.to_event_id)).all()
            assert len(edges) == len(set(edges))
            updates = session.scalar(select(func.count()).select_from(GroupUpdateRow))
            last = session.scalar(select(func.max(GroupUpdateRow.sequence)))
            assert updates == last  # 1..n, no gap, no duplicate


def test_a_restarted_engine_learns_the_cameras_travel_times_again(
    database_url: str, tmp_path: Path
) -> None:
    learning = site_passes(2 * KNOWN_AFTER)
    # Reloads every 8 events: one falls right before the crossing.
    assert len(learning) % 8 == 0
    events = learning + site_crossing(len(learning) * 60.0 + 120.0)
    with replayed_twice(database_url, tmp_path, events, batch=8) as (expected, store):
        assert frozenset({"in-door", "in-hall", "in-yard"}) in expected
        assert frozenset({"out-yard", "out-hall", "out-door"}) in expected
        assert memberships(store) == expected


def test_a_restarted_engine_keeps_the_pods_still_pending_in_their_group(
    database_url: str, tmp_path: Path
) -> None:
    pending = pending_pod_events()
    # Reloads after every event: one while the group is out of the window.
    unrelated = pod_event(1000, "other-1", "Pulled", event_id="unrelated")
    events = [*pending[:2], unrelated, *pending[2:]]
    with replayed_twice(database_url, tmp_path, events, batch=1) as (expected, store):
        assert frozenset(e.event_id for e in pending) in expected
        assert memberships(store) == expected


def test_groups_read_back_as_the_engine_emitted_them(database_url: str) -> None:
    store = CorrelationStore(database_url)
    try:
        store.migrate()
        engine = CorrelationEngine(default_config())
        emitted = []
        for i, built in enumerate(
            [event(0, event_id="a", fingerprint="f"), event(2, event_id="b", fingerprint="f")]
        ):
            built.sequence = i + 1
            emitted += engine.apply(engine.prepare(built), no_topology)
        store.commit_batch(engine.take_changes(), 2)
        engine.committed()
        queries = GroupQueries(store.sessions)
        group = queries.get_group(emitted[-1].group.group_id)
        assert group == emitted[-1].group
        assert queries.group_for_event("a") == group
        assert queries.group_for_event("nope") is None
        batch = queries.read_updates(0, 10, GroupFilter())
        assert [u.sequence for u in batch.items] == [1]
        assert batch.through == 1
        assert queries.read_updates(0, 10, GroupFilter(min_severity=4)).items == []
        page, more = queries.list_groups(GroupFilter(), 0, 10)
        assert [g.group_id for g in page] == [group.group_id] and more is None
        config = default_config()
        config.max_group_size = 9
        store.save_config(config)
        loaded = store.load_config()
        assert loaded is not None and loaded.max_group_size == 9
    finally:
        store.close()
