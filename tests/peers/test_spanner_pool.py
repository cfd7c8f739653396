"""The association pool against the real peers: C-FINDs on kept associations,
exclusive leases under concurrency, idle expiry, and a source that goes away."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from pydicom import Dataset

from corrmesh.spanner import dimse
from corrmesh.spanner.pool import AssociationPool
from tests.support.dicom_data import uid, union

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from tests.support.dicom_peers import Peer, Peers

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CALLING_AE = "POOLTEST"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remote(peer: Peer) -> dimse.Remote:
    return dimse.Remote(peer.ae_title, "127.0.0.1", peer.port)


def key(peer: Peer) -> Hashable:
    """The pool key ``dimse.find`` uses for a Study Root C-FIND at ``peer``."""
    return (remote(peer).key, CALLING_AE, STUDY_ROOT_FIND)


def find(pool: AssociationPool, peer: Peer) -> set[str]:
    """The Study Instance UIDs a STUDY-level C-FIND at ``peer`` answers."""
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = keys.PatientID = ""
    matches = dimse.find(
        remote(peer), CALLING_AE, STUDY_ROOT_FIND, keys, 10, threading.Event(), pool
    )
    return {uid(match.StudyInstanceUID) for match in matches}


def kept_after_a_find(pool: AssociationPool, peer: Peer) -> Association:
    """The association a C-FIND at ``peer`` left in ``pool``, back in it."""
    find(pool, peer)
    kept = pool.take(key(peer))
    assert kept is not None
    pool.give_back(key(peer), kept)
    return kept


def wait_until(
    condition: Callable[[], bool], timeout: float = 15.0, state: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached {state()}"
        time.sleep(0.02)


def network_state(assoc: Association) -> str:
    """What pynetdicom's network thread of ``assoc`` is doing, for a failure message."""
    dul = assoc.dul
    return f"(network thread alive: {dul.is_alive()}, state {dul.state_machine.current_state})"


@pytest.fixture
def pool() -> Iterator[AssociationPool]:
    # Idle associations outlive every test here, so the pool's reaper never
    # releases one a test is still watching.
    made = AssociationPool(dimse.release_later, idle_seconds=600.0)
    yield made
    made.close()


def test_the_next_find_runs_on_the_kept_association(pool: AssociationPool, peers: Peers) -> None:
    peer = peers.dcmqrscp
    expected = union(peers.loaded["c"], "STUDY")
    assert find(pool, peer) == expected
    kept = pool.take(key(peer))
    assert kept is not None and kept.is_established
    # Nagle stays off on a kept association's socket, as on a new one.
    transport = kept.dul.socket
    assert transport is not None and transport.socket is not None
    assert transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pool.give_back(key(peer), kept)
    # Waiting in the pool, its reactor thread is parked rather than polling.
    wait_until(lambda: kept._is_paused)
    assert not kept._reactor_checkpoint.is_set()

    assert find(pool, peer) == expected
    assert pool.take(key(peer)) is kept
    pool.give_back(key(peer), kept)


def test_a_leased_association_is_not_lent_twice(pool: AssociationPool, peers: Peers) -> None:
    peer = peers.orthanc_a
    expected = union(peers.loaded["a"], "STUDY")
    find(pool, peer)
    leased = pool.take(key(peer))
    assert leased is not None and pool.take(key(peer)) is None

    assert find(pool, peer) == expected  # on an association of its own
    other = pool.take(key(peer))
    assert other is not None and other is not leased
    pool.give_back(key(peer), leased)
    pool.give_back(key(peer), other)
    assert pool.idle(key(peer)) == 2


def test_concurrent_finds_all_get_their_whole_answer(pool: AssociationPool, peers: Peers) -> None:
    expected = {
        peer.name: union(peers.loaded[name], "STUDY")
        for name, peer in zip("abc", peers.all, strict=True)
    }
    jobs = [peer for peer in peers.all for _ in range(4)]
    with ThreadPoolExecutor(max_workers=6) as workers:
        answers = list(workers.map(lambda peer: (peer.name, find(pool, peer)), jobs))
    assert all(answer == expected[name] for name, answer in answers)
    for peer in peers.all:
        assert 1 <= pool.idle(key(peer)) <= pool.max_idle
    kept = [pool.take(key(peer)) for peer in peers.all for _ in range(pool.max_idle)]
    alive = [assoc for assoc in kept if assoc is not None]
    assert all(assoc.is_established for assoc in alive)
    assert len({id(assoc) for assoc in alive}) == len(alive)
    for assoc in alive:
        dimse.release_later(assoc)


def test_an_idle_association_is_released_after_the_idle_time(peers: Peers) -> None:
    clock = Clock()
    pool = AssociationPool(dimse.release_later, idle_seconds=10.0, clock=clock)
    peer = peers.orthanc_b
    expected = union(peers.loaded["b"], "STUDY")
    try:
        assert find(pool, peer) == expected
        kept = pool.take(key(peer))
        assert kept is not None
        pool.give_back(key(peer), kept)

        clock.now += 9.0
        pool.expire()
        assert pool.idle(key(peer)) == 1

        clock.now += 1.0
        pool.expire()
        assert pool.idle(key(peer)) == 0
        wait_until(lambda: kept.is_released)  # released, not aborted

        assert find(pool, peer) == expected
        assert pool.take(key(peer)) is not kept
    finally:
        pool.close()


def test_a_source_that_went_away_fails_then_gets_a_new_association(
    pool: AssociationPool, peers: Peers
) -> None:
    peer = peers.dcmqrscp
    expected = union(peers.loaded["c"], "STUDY")
    kept = kept_after_a_find(pool, peer)

    with peer.process.stopped():
        with pytest.raises(dimse.SourceError):
            find(pool, peer)
        assert pool.idle(key(peer)) == 0

    # Back up: the dropped association is not reused, a new one answers.
    assert find(pool, peer) == expected
    assert not kept.is_established
    assert pool.take(key(peer)) is not kept


def test_a_closed_pool_keeps_nothing(peers: Peers) -> None:
    pool = AssociationPool(dimse.release_later)
    peer = peers.orthanc_a
    kept = kept_after_a_find(pool, peer)
    pool.close()
    assert pool.idle() == 0
    wait_until(lambda: kept.is_released)

    assert find(pool, peer) == union(peers.loaded["a"], "STUDY")
    assert pool.idle() == 0


def test_a_kept_association_dropped_unnoticed_is_replaced_transparently(
    pool: AssociationPool, peers: Peers
) -> None:
    """The source ends a kept association just before it is used again: the
    C-FIND is asked again on a new association, and the caller sees no error."""
    peer = peers.dcmqrscp
    expected = union(peers.loaded["c"], "STUDY")
    find(pool, peer)
    kept = pool.take(key(peer))
    assert kept is not None
    # Hold pynetdicom's reactor so that the association still reads as
    # established after the source has gone: the race this covers is a source
    # closing the association between the pool's check and the C-FIND.
    kept._reactor_checkpoint.clear()
    wait_until(lambda: kept._is_paused)
    peer.process.stop()
    peer.process.start()
    # Mostly the association still reads as established here: the race this
    # covers. When the source's going shows as a connection reset instead,
    # pynetdicom's network thread marks it ended itself, and the pool must not
    # hand it out: either way the caller sees the answer and no error.
    pool.give_back(key(peer), kept)

    assert find(pool, peer) == expected
    assert pool.take(key(peer)) is not kept


def test_a_parked_association_the_source_ended_is_not_lent(
    pool: AssociationPool, peers: Peers
) -> None:
    """Nothing but pynetdicom's network thread watches a parked association: when
    the source ends it, the pool sees what that thread received and lends a new one."""
    peer = peers.dcmqrscp
    expected = union(peers.loaded["c"], "STUDY")
    kept = kept_after_a_find(pool, peer)
    wait_until(lambda: kept._is_paused)

    peer.process.stop()
    peer.process.start()
    wait_until(
        lambda: kept.dul.peek_next_pdu() is not None or not kept.dimse.msg_queue.empty(),
        state=lambda: network_state(kept),
    )
    assert kept.is_established  # as far as the parked reactor knows
    assert pool.take(key(peer)) is None

    assert find(pool, peer) == expected
    assert pool.take(key(peer)) is not kept
