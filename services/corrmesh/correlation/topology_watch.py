"""Keeps Correlation's topology caches honest: WatchTopology tells it what changed.

Correlation caches Topology's answers (relations between resources for the
engine, failure reach for the analysis). This task follows WatchTopology from
the moment it starts and drops what a change can have made wrong:

- a resource upserted can only turn "unknown" answers into known ones, so
  only those go;
- an edge added or removed, a resource deleted or a resync can change any
  answer, so everything goes.

When the stream breaks, changes may have been missed: the caches are cleared
and the watch resumes after the last change it saw. Each cache also keeps its
TTL, which bounds staleness should Topology be unreachable for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

import grpc

from corrmesh.v1 import topology_pb2, topology_pb2_grpc

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


class TopologyCache(Protocol):
    """A cache of Topology's answers."""

    def forget_all(self) -> None:
        """Drops every answer."""

    def forget_unknown(self) -> None:
        """Drops the answers about resources Topology did not know."""


def only_upserts(changes: Iterable[topology_pb2.TopologyChange]) -> bool:
    """True when ``changes`` only add or update resources."""
    return all(c.type == topology_pb2.CHANGE_TYPE_RESOURCE_UPSERTED for c in changes)


class TopologyWatch:
    """Follows WatchTopology and invalidates ``caches``."""

    def __init__(self, channel: grpc.aio.Channel, caches: Sequence[TopologyCache]) -> None:
        self._stub = topology_pb2_grpc.TopologyServiceStub(channel)
        self._caches = list(caches)
        self.last_sequence = 0
        self.changes_seen = 0

    def apply(self, changes: Sequence[topology_pb2.TopologyChange]) -> None:
        """Invalidates what ``changes`` can have made wrong."""
        if not changes:
            return
        self.changes_seen += len(changes)
        self.last_sequence = max(self.last_sequence, changes[-1].sequence)
        for cache in self._caches:
            if only_upserts(changes):
                cache.forget_unknown()
            else:
                cache.forget_all()

    async def run(self, stopping: asyncio.Event) -> None:
        """Watches until ``stopping`` is set, reconnecting after a break."""
        while not stopping.is_set():
            request = topology_pb2.WatchTopologyRequest(
                after_sequence=self.last_sequence, from_now=self.last_sequence == 0
            )
            call = self._stub.WatchTopology(request)
            stop = asyncio.ensure_future(stopping.wait())
            try:
                while True:
                    read = asyncio.ensure_future(call.read())
                    done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if stop in done:
                        read.cancel()
                        return
                    response = read.result()
                    if not isinstance(response, topology_pb2.WatchTopologyResponse):
                        break  # the end of the stream
                    self.apply(response.changes)
            except grpc.aio.AioRpcError as error:
                log.info("topology watch broke (%s); retrying", error.code().name)
            finally:
                call.cancel()
                stop.cancel()
            # Whatever changed while the stream was down is unknown.
            for cache in self._caches:
                cache.forget_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RETRY_SECONDS)
