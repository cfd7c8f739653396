"""The direct_link strategy: fingerprint, resource, Topology relation, window."""

from __future__ import annotations

import pytest

from corrmesh.correlation.strategies import StrategyContext, create_strategies, strategy_names
from corrmesh.correlation.strategies.direct_link import DirectLinkStrategy, seconds_apart
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import event_pb2, topology_pb2
from tests.support.correlation_events import deployment, event, no_topology, pod

WINDOW_US = 300_000_000


def info(built: event_pb2.Event) -> EventInfo:
    return EventInfo.from_event(built)


def context(relation=no_topology) -> StrategyContext:
    return StrategyContext(WINDOW_US, relation)


def test_registry_knows_direct_link() -> None:
    assert "direct_link" in strategy_names()
    assert any(isinstance(s, DirectLinkStrategy) for s in create_strategies())


def test_same_fingerprint_reads_well() -> None:
    match = DirectLinkStrategy().score(
        info(event(12, fingerprint="f-123")), info(event(0, fingerprint="f-123")), context()
    )
    assert match is not None
    assert match.score == 1.0
    assert match.strategy == "direct_link"
    assert match.reason == "same fingerprint f-123, 12 s apart"


def test_same_resource_reads_well() -> None:
    checkout = deployment("checkout")
    match = DirectLinkStrategy().score(
        info(event(3, resource=checkout)), info(event(0, resource=checkout)), context()
    )
    assert match is not None
    assert match.reason == "same resource Deployment shop/checkout, 3 s apart"


def test_recreated_object_with_new_uid_is_not_the_same_resource() -> None:
    old = deployment("checkout")
    old.uid = "uid-1"
    new = deployment("checkout")
    new.uid = "uid-2"
    match = DirectLinkStrategy().score(
        info(event(3, resource=new)), info(event(0, resource=old)), context()
    )
    assert match is None


def test_outside_the_window_nothing_matches() -> None:
    match = DirectLinkStrategy().score(
        info(event(301, fingerprint="f")), info(event(0, fingerprint="f")), context()
    )
    assert match is None


def test_empty_fingerprints_do_not_match() -> None:
    assert DirectLinkStrategy().score(info(event(1)), info(event(0)), context()) is None


@pytest.mark.parametrize(
    ("kind", "distance", "score", "text"),
    [
        (
            topology_pb2.RELATION_KIND_OWNER,
            2,
            0.95,
            "Pod shop/checkout-1 is owned by Deployment shop/checkout",
        ),
        (
            topology_pb2.RELATION_KIND_SIBLING,
            2,
            0.9,
            "Deployment shop/checkout and Pod shop/checkout-1 share an owner or a node",
        ),
        (
            topology_pb2.RELATION_KIND_DEPENDENCY,
            1,
            0.8,
            "Deployment shop/checkout and Pod shop/checkout-1 are joined by a direct dependency",
        ),
    ],
)
def test_topology_relations_join(kind: int, distance: int, score: float, text: str) -> None:
    seen: list[tuple[str, str]] = []

    def relation(a: str, b: str) -> tuple[int, int]:
        seen.append((a, b))
        return (kind, distance)

    new = info(event(5, resource=pod("checkout-1")))
    old = info(event(0, resource=deployment("checkout")))
    match = DirectLinkStrategy().score(new, old, context(relation))
    assert match is not None
    assert match.score == score
    assert match.reason == f"{text}, 5 s apart"
    assert seen == [(new.resource_key, old.resource_key)]


@pytest.mark.parametrize(
    ("kind", "distance"),
    [
        (topology_pb2.RELATION_KIND_DEPENDENCY, 2),
        (topology_pb2.RELATION_KIND_UNRELATED, 0),
        (topology_pb2.RELATION_KIND_UNKNOWN, 0),
    ],
)
def test_weak_or_no_relation_does_not_join(kind: int, distance: int) -> None:
    match = DirectLinkStrategy().score(
        info(event(5, resource=pod("a"))),
        info(event(0, resource=pod("b"))),
        context(lambda _a, _b: (kind, distance)),
    )
    assert match is None


def test_seconds_apart_wording() -> None:
    assert seconds_apart(0, 12_000_000) == "12 s apart"
    assert seconds_apart(2_500_000, 0) == "2.5 s apart"
    assert seconds_apart(0, 0) == "0 s apart"
    assert seconds_apart(0, 61_400_000) == "61 s apart"
