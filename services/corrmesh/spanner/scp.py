"""The spanning DIMSE SCP: any DICOM client can use the spanner as one big PACS.

pynetdicom runs the server and its handlers in threads; each handler hands its
work to the service's event loop and waits for it. C-FIND streams matches as
the engine yields them and honours C-CANCEL between matches (0xFE00).
A C-CANCEL is seen within CANCEL_CHECK_SECONDS even while sources are
still answering; the query is then cancelled at every source.
C-MOVE and C-GET go through the retrieve planner in PROXY mode: the spanner
fetches the instances from the sources and sends them on itself.

The configuration served is the one named like the called AE title, else the
first enabled configuration that supports the DIMSE SCP.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Iterator
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from corrmesh.runtime.dicom_net import NODELAY_HANDLERS, share_contexts
from corrmesh.spanner.datasets import MODELS_BY_UID, UTF8, level_of
from corrmesh.spanner.engine import QuerySpec, SpannerEngine
from corrmesh.spanner.retrieve import Retriever
from corrmesh.v1 import spanner_pb2 as pb

log = logging.getLogger(__name__)

FAILED_UNABLE = 0xC000
FAILED_IDENTIFIER = 0xA900
CANCELLED = 0xFE00
CANCEL_CHECK_SECONDS = 0.05
_DONE = object()


class SpanningScp:
    """The DIMSE listener; ``start``/``stop`` may be called repeatedly."""

    def __init__(self, engine: SpannerEngine, retriever: Retriever, ae_title: str) -> None:
        self.engine = engine
        self.retriever = retriever
        self.ae_title = ae_title
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, host: str, port: int) -> None:
        """Binds and serves in background threads (raises OSError when the port is taken)."""
        self._loop = asyncio.get_running_loop()
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for uid in MODELS_BY_UID:
            ae.add_supported_context(uid)
        # C-GET sends instances back on the requestor's association (SCU role for storage).
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), scu_role=True, scp_role=True)
        ae.require_called_aet = False
        handlers = [
            *NODELAY_HANDLERS,
            (evt.EVT_C_ECHO, lambda _event: 0x0000),
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_MOVE, self._move),
            (evt.EVT_C_GET, self._get),
        ]
        server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        assert server is not None
        share_contexts(server)
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def _call(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _spec(self, event: Event, operation: int) -> QuerySpec | None:
        """The request as a query on the configuration it is served from; None
        when its level or model is unusable or no configuration serves it."""
        spec = _parsed(event, operation)
        if spec is None or not self._call(self._configure(spec, _called(event))):
            return None
        return spec

    async def _configure(self, spec: QuerySpec, called_ae: str) -> bool:
        spec.config_id = await self.engine.scp_config(called_ae)
        return bool(spec.config_id)

    def _find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        spec = _parsed(event, pb.SPANNING_OPERATION_C_FIND)
        if spec is None:
            yield FAILED_IDENTIFIER, None
            return
        matches: queue.Queue[Any] = queue.Queue()
        assert self._loop is not None
        # The configuration is looked up by the query's own coroutine: one trip to
        # the event loop instead of two before the sources are asked.
        future = asyncio.run_coroutine_threadsafe(
            self._collect(spec, _called(event), matches), self._loop
        )
        while True:
            try:
                # A C-CANCEL must not wait for the slowest source: look between waits.
                item = matches.get(timeout=CANCEL_CHECK_SECONDS)
            except queue.Empty:
                item = None
            if event.is_cancelled:
                future.cancel()
                yield CANCELLED, None
                return
            if item is None:
                continue
            if item is _DONE:
                break
            if isinstance(item, int):
                yield item, None
                return
            item.QueryRetrieveLevel = spec.identifier.QueryRetrieveLevel
            item.SpecificCharacterSet = UTF8
            yield 0xFF00, item
        yield 0x0000, None

    async def _collect(self, spec: QuerySpec, called_ae: str, out: queue.Queue[Any]) -> None:
        try:
            if not await self._configure(spec, called_ae):
                out.put(FAILED_IDENTIFIER)
                return
            async for item in self.engine.query(spec):
                if isinstance(item, pb.QuerySummary):
                    if item.outcome == pb.OPERATION_OUTCOME_FAILED:
                        out.put(FAILED_UNABLE)
                elif not isinstance(item, pb.SourceStatus):
                    out.put(item.dataset)
        except Exception:  # any engine failure is a DIMSE failure status, not a dead thread
            log.exception("spanning C-FIND failed")
            out.put(FAILED_UNABLE)
        finally:
            out.put(_DONE)

    def _move(self, event: Event) -> Iterator[Any]:
        spec = self._spec(event, pb.SPANNING_OPERATION_C_MOVE)
        destination = self._call(self.engine.destination(str(event.move_destination).strip()))
        if destination is None:
            yield None, None  # pynetdicom answers 0xA801, unknown destination
            return
        instances = self._call(self.retriever.fetch_all(spec)) if spec is not None else []
        pairs = {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in instances}
        contexts = [build_context(sop, syntax) for sop, syntax in sorted(pairs)]
        # The sub-association proposes exactly what will be stored on it, Nagle off.
        yield (
            destination.host,
            destination.port,
            {
                "contexts": contexts or [build_context(Verification)],
                "evt_handlers": NODELAY_HANDLERS,
            },
        )
        yield from self._send(event, spec, instances)

    def _get(self, event: Event) -> Iterator[Any]:
        spec = self._spec(event, pb.SPANNING_OPERATION_C_GET)
        instances = self._call(self.retriever.fetch_all(spec)) if spec is not None else []
        yield from self._send(event, spec, instances)

    def _send(
        self, event: Event, spec: QuerySpec | None, instances: list[Dataset]
    ) -> Iterator[Any]:
        if spec is None:
            yield 0
            yield FAILED_IDENTIFIER, None
            return
        yield len(instances)
        for dataset in instances:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield 0xFF00, dataset


def _called(event: Event) -> str:
    return str(event.assoc.acceptor.ae_title).strip()


def _parsed(event: Event, operation: int) -> QuerySpec | None:
    """The request as a QuerySpec (configuration not yet chosen); None when its
    level or information model is unusable."""
    identifier: Dataset = event.identifier
    level = level_of(identifier)
    model = MODELS_BY_UID.get(str(event.request.AffectedSOPClassUID), 0)
    if not level or not model:
        return None
    calling = str(event.assoc.requestor.ae_title).strip()
    identifier.decode()
    return QuerySpec("", level, model, identifier, 0, calling, operation)
