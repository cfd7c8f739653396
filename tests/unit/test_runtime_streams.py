import asyncio

from corrmesh.runtime.streams import Batch, HeadNotifier, clamp_batch, follow


class MemoryLog:
    """A list standing in for a store: items are (sequence, value)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []
        self.notifier = HeadNotifier()

    def append(self, value: str) -> None:
        self.items.append((len(self.items) + 1, value))
        self.notifier.announce(len(self.items))

    async def read_after(self, after: int, limit: int) -> Batch[tuple[int, str]]:
        chosen = [item for item in self.items if item[0] > after][:limit]
        through = chosen[-1][0] if chosen else after
        return Batch([i for i in chosen if not i[1].startswith("skip")], through)


async def test_follow_catches_up_then_follows_live_then_stops() -> None:
    log = MemoryLog()
    for value in ("a", "b", "skip-c", "d"):
        log.append(value)
    stopping = asyncio.Event()
    seen: list[tuple[int, str]] = []
    throughs: list[int] = []

    async def consume() -> None:
        async for batch in follow(log.read_after, 1, log.notifier, stopping, batch_size=2):
            seen.extend(batch.items)
            throughs.append(batch.through)
            if any(v == "e" for _, v in batch.items):
                stopping.set()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    log.append("e")
    await asyncio.wait_for(task, 5)
    assert [v for _, v in seen] == ["b", "d", "e"]
    # The filtered item still moved the position: through passed 3.
    assert throughs[:2] == [3, 4]


async def test_follow_ends_promptly_when_stopping() -> None:
    log = MemoryLog()
    stopping = asyncio.Event()

    async def consume() -> int:
        count = 0
        async for _ in follow(log.read_after, 0, log.notifier, stopping, batch_size=10):
            count += 1
        return count

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    stopping.set()
    assert await asyncio.wait_for(task, 2) == 0


def test_clamp_batch() -> None:
    assert clamp_batch(0) == 500
    assert clamp_batch(7) == 7
    assert clamp_batch(10**9) == 10_000
