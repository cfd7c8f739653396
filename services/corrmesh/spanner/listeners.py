"""The spanner's own listeners: the spanning DIMSE SCP and the DICOMweb endpoint.

Both start on ``StartListeners`` (or at process start with the
``spanner_start_listeners`` setting); ports and AE title are the Settings
``spanner_dicom_port``, ``spanner_dicomweb_port`` and ``spanner_dicom_ae_title``
(defaults from DESIGN.md: 11112, 8080, CORRMESH). A listener that cannot bind
is reported FAILED with the reason, and the other keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette

from corrmesh.runtime.settings import Settings
from corrmesh.runtime.web import HTTP_PARSER
from corrmesh.spanner.scp import SpanningScp
from corrmesh.v1 import spanner_pb2

log = logging.getLogger(__name__)

DIMSE_LISTENER_ID = "dimse-scp"
DICOMWEB_LISTENER_ID = "dicomweb"
LISTENER_IDS = (DIMSE_LISTENER_ID, DICOMWEB_LISTENER_ID)


@dataclass
class _State:
    state: int = spanner_pb2.LISTENER_STATE_STOPPED
    started_at: datetime | None = None
    error: str = ""


@dataclass
class ListenerManager:
    """Starts, stops and reports the two listeners of one Spanner process."""

    settings: Settings
    scp: SpanningScp
    web_app: Starlette
    dimse_port: int = field(init=False)
    web_port: int = field(init=False)
    _states: dict[str, _State] = field(default_factory=lambda: {i: _State() for i in LISTENER_IDS})
    _web: uvicorn.Server | None = None
    _web_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.dimse_port = self.settings.spanner_dicom_port
        self.web_port = self.settings.spanner_dicomweb_port

    def describe(self, listener_id: str) -> spanner_pb2.Listener:
        state = self._states[listener_id]
        dimse = listener_id == DIMSE_LISTENER_ID
        listener = spanner_pb2.Listener(
            listener_id=listener_id,
            kind=spanner_pb2.LISTENER_KIND_DIMSE if dimse else spanner_pb2.LISTENER_KIND_DICOMWEB,
            state=state.state,  # type: ignore[arg-type]
            host=self.settings.host,
            port=self.dimse_port if dimse else self.web_port,
            ae_title=self.scp.ae_title if dimse else "",
            error=state.error,
        )
        if state.started_at is not None:
            listener.started_at.FromDatetime(state.started_at)
        return listener

    def all(self) -> list[spanner_pb2.Listener]:
        return [self.describe(i) for i in LISTENER_IDS]

    async def start(self, listener_id: str) -> spanner_pb2.Listener:
        state = self._states[listener_id]
        if state.state == spanner_pb2.LISTENER_STATE_RUNNING:
            return self.describe(listener_id)
        try:
            if listener_id == DIMSE_LISTENER_ID:
                self.scp.start(self.settings.host, self.dimse_port)
            else:
                await self._start_web()
        except (OSError, SystemExit, RuntimeError) as exc:
            state.state, state.error, state.started_at = (
                spanner_pb2.LISTENER_STATE_FAILED,
                str(exc) or "cannot bind",
                None,
            )
            log.warning("listener %s failed to start: %s", listener_id, state.error)
        else:
            state.state, state.error = spanner_pb2.LISTENER_STATE_RUNNING, ""
            state.started_at = datetime.now(UTC)
        return self.describe(listener_id)

    async def stop(self, listener_id: str) -> spanner_pb2.Listener:
        if listener_id == DIMSE_LISTENER_ID:
            await asyncio.to_thread(self.scp.stop)
        elif self._web is not None:
            self._web.should_exit = True
            if self._web_task is not None:
                await self._web_task
            self._web, self._web_task = None, None
        self._states[listener_id] = _State()
        return self.describe(listener_id)

    async def restart(self, listener_id: str) -> spanner_pb2.Listener:
        await self.stop(listener_id)
        return await self.start(listener_id)

    async def stop_all(self) -> None:
        for listener_id in LISTENER_IDS:
            await self.stop(listener_id)

    async def _start_web(self) -> None:
        config = uvicorn.Config(
            self.web_app, host=self.settings.host, port=self.web_port, http=HTTP_PARSER,
            log_level="warning", lifespan="off", access_log=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # re-raises why it could not start
                raise RuntimeError(f"cannot listen on port {self.web_port}")
            await asyncio.sleep(0.01)
        self._web, self._web_task = server, task
