"""The analyst's failure history: patterns that read it depend on event time, not on
the order in which a backlog of groups happens to be analysed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from corrmesh.correlation.analysis.analyst import Analyst
from corrmesh.correlation.analysis.reach import TopologyReach
from corrmesh.correlation.gate import EngineGate
from corrmesh.correlation.window import EventInfo
from corrmesh.v1 import correlation_pb2, event_pb2
from tests.support.correlation_events import event

HOUR = 3600.0


class NoTopology:
    """Topology knowing none of the resources (what TopologyReach gives then)."""

    refs: dict[str, event_pb2.ResourceRef] = {}

    async def reach(self, refs: Iterable[event_pb2.ResourceRef]) -> dict[str, dict[str, int]]:
        return {}

    async def neighbours(
        self, refs: Iterable[event_pb2.ResourceRef]
    ) -> dict[str, event_pb2.ResourceRef]:
        return {}

    async def impact(self, ref: event_pb2.ResourceRef, depth: int) -> None:
        return None


def oom_at(hours: float) -> list[EventInfo]:
    """currencyservice's Pod killed for memory ``hours`` into the day."""
    pod = event_pb2.ResourceRef(kind="Pod", namespace="default", name="currency-hwjl7nzv9-z75tg")
    message = "the last termination reason is OOMKilled container=server"
    return [
        EventInfo.from_event(
            event(
                hours * HOUR,
                resource=pod,
                type="OOMKilled",
                title=f"Pod {pod.name}: {message}",
                description=message,
                source="kubernetes",
            )
        )
    ]


def analyst() -> Analyst:
    # Neither the gate nor Topology is reached by analyse() here.
    return Analyst(cast(EngineGate, None), cast(TopologyReach, NoTopology()))


def pattern(group: correlation_pb2.Group) -> str:
    return group.pattern.pattern if group.HasField("pattern") else ""


async def test_a_recurrence_found_late_is_the_same_as_one_found_in_order() -> None:
    in_order = analyst()
    for number, hours in enumerate((0, 6, 12), start=1):
        last = await in_order.analyse(f"g{number}", 1, oom_at(hours))
    assert pattern(last) == "recurring_failure"

    # A backlog analysed newest first: the third occurrence has no history yet
    # (one OOMKill on its own reads as resource exhaustion).
    backlog = analyst()
    assert pattern(await backlog.analyse("g3", 1, oom_at(12))) == "resource_exhaustion"
    await backlog.analyse("g2", 1, oom_at(6))
    # Two occurrences make no recurrence yet: nothing to analyse again.
    assert backlog.awaiting == 0
    await backlog.analyse("g1", 1, oom_at(0))
    # The third makes one for the latest group only (g2 saw two) ...
    assert backlog.awaiting == 1
    # ... and analysed again, the third one is the recurrence it is in order.
    assert pattern(await backlog.analyse("g3", 1, oom_at(12))) == "recurring_failure"


async def test_analysing_a_group_again_sends_nothing_back() -> None:
    again = analyst()
    for number, hours in enumerate((0, 6, 12), start=1):
        await again.analyse(f"g{number}", 1, oom_at(hours))
    assert again.awaiting == 0
    await again.analyse("g1", 2, oom_at(0))
    assert again.awaiting == 0, "the same occurrence again changes no one's history"
