"""Many publishers at once, events of one incident at the same instant, an operator's
edit in the middle, and a subscriber too slow to keep up: one group, nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corrmesh.v1 import correlation_pb2
from tests.support.correlation_events import event
from tests.support.correlation_mesh import mesh, watch

PUBLISHERS = 8
PER_PUBLISHER = 10


async def test_concurrent_publishers_one_instant_one_group(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        slow_seen: list[int] = []

        async def slow_subscriber() -> None:
            call = m.correlation.WatchGroups(correlation_pb2.WatchGroupsRequest(max_batch_size=1))
            async for response in call:
                slow_seen.extend(u.sequence for u in response.updates)
                await asyncio.sleep(2.0)

        slow = asyncio.create_task(slow_subscriber())

        async def publisher(number: int) -> list[int]:
            sequences: list[int] = []
            for i in range(PER_PUBLISHER):
                storm = event(30, event_id=f"storm-{number}-{i}", fingerprint="disk-full")
                noise = event(30, event_id=f"noise-{number}-{i}")
                sequences += await m.publish(storm, noise)
            return sequences

        async def operator() -> correlation_pb2.Group:
            sequences = await m.publish(event(31, event_id="left"), event(31, event_id="right"))
            # An operator edits what Correlation has read (the edit would wait for it otherwise).
            await m.consumed(sequences[-1])
            reply = await m.correlation.CorrelateEvents(
                correlation_pb2.CorrelateEventsRequest(event_ids=["left", "right"], reason="same")
            )
            return reply.group

        results = await asyncio.gather(*(publisher(n) for n in range(PUBLISHERS)), operator())
        manual = results[-1]
        assert isinstance(manual, correlation_pb2.Group)
        await m.consumed(PUBLISHERS * PER_PUBLISHER * 2 + 2)

        request = correlation_pb2.GetGroupForEventRequest(event_id="storm-0-0")
        storm = (await m.correlation.GetGroupForEvent(request)).group
        expected = {f"storm-{n}-{i}" for n in range(PUBLISHERS) for i in range(PER_PUBLISHER)}
        assert {member.event_id for member in storm.members} == expected
        assert len({member.occurred_at.ToNanoseconds() for member in storm.members}) == 1
        assert {member.event_id for member in manual.members} == {"left", "right"}

        groups = await m.correlation.ListGroups(correlation_pb2.ListGroupsRequest())
        assert len(groups.groups) == 2, "the storm and the operator's group, nothing else"

        # MEMBER_ADDED updates of one batch are folded: every storm event is named once.
        total = PUBLISHERS * PER_PUBLISHER

        def storm_complete(updates: list[correlation_pb2.GroupUpdate], _t: int) -> bool:
            named = {i for u in updates for i in u.event_ids if i.startswith("storm-")}
            return len(named) >= total - 1  # the first storm event caused no update

        updates, _through = await watch(
            m.correlation, correlation_pb2.WatchGroupsRequest(), storm_complete
        )
        caused = [i for u in updates for i in u.event_ids if i.startswith("storm-")]
        assert len(caused) == len(set(caused)) == total - 1
        sequences = [u.sequence for u in updates]
        assert sequences == list(range(1, len(sequences) + 1)), "gap-free, in order"
        # The slow subscriber is far behind, and the engine did not wait for it.
        assert len(slow_seen) < len(sequences)
        slow.cancel()
