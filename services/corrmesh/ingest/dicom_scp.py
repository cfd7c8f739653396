"""Ingest's DICOM C-STORE SCP (pynetdicom): modalities and PACS send studies here.

Each accepted association gets one correlation id; each instance is read
(identifiers only), written to the destination folder, recorded as RECEIVED
and STORED steps (or a FAILED step naming the stage) through the same
validation and durable log as Publish, and only then answered. Stored
instances are handed to the forwarder when a PACS is configured.

Refusals are clean and leave the SCP serving: an unknown calling AE gets an
A-ASSOCIATE-RJ, a data set that cannot be decoded 0xC210, one without its
identifying UIDs 0xA900, a storage or log failure 0xA700. Logs name the
association, calling AE, source address and stage, never patient data.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from pydicom.uid import UID
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event as DicomEvent
from pynetdicom.transport import ThreadedAssociationServer

from corrmesh.ingest.dicom_steps import (
    Association,
    Identifiers,
    MalformedInstanceError,
    Step,
    UndecodableInstanceError,
    read_encoded_identifiers,
    read_identifiers,
    step_event,
)
from corrmesh.ingest.edge import EdgePublisher
from corrmesh.ingest.storage import (
    FolderStore,
    Forwarder,
    ForwardJob,
    ForwardTarget,
    describe_os_error,
    part10_header,
)
from corrmesh.runtime.dicom_net import NODELAY_HANDLERS, share_contexts
from corrmesh.runtime.settings import Settings
from corrmesh.runtime.tracing import (
    CORRELATION_ATTRIBUTE,
    entry_span,
    spans_exported,
    tracer,
    with_correlation_id,
)
from corrmesh.v1 import event_pb2

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_CANNOT_DECODE = 0xC210
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
MAX_ASSOCIATIONS = 64
#: Largest P-DATA PDU we accept: few PDUs per instance, less per-PDU work.
MAX_PDU_BYTES = 1024 * 1024
_STORAGE_UIDS = {
    UID(str(cx.abstract_syntax)).keyword: str(cx.abstract_syntax)
    for cx in AllStoragePresentationContexts
}


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def resolve_sop_classes(names: Sequence[str]) -> tuple[str, ...]:
    """Storage SOP class UIDs from UIDs or keywords ("CTImageStorage"); empty: all of them."""
    if not names:
        return tuple(_STORAGE_UIDS.values())
    uids = []
    for name in names:
        if name in _STORAGE_UIDS:
            uids.append(_STORAGE_UIDS[name])
        elif UID(name).is_valid:
            uids.append(name)
        else:
            raise ValueError(f"{name!r} is neither a storage SOP class keyword nor a UID")
    return tuple(uids)


def make_storage_ae(
    ae_title: str, sop_classes: Sequence[str], allowed_aes: Sequence[str] = ()
) -> AE:
    """An AE that accepts C-ECHO and C-STORE of ``sop_classes`` in any transfer syntax."""
    ae = AE(ae_title)
    ae.require_called_aet = True
    ae.require_calling_aet = list(allowed_aes)
    ae.maximum_associations = MAX_ASSOCIATIONS
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for uid in sop_classes:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    return ae


def start_storage_server(
    ae: AE,
    host: str,
    port: int,
    handlers: list[Any],
    ssl_context: ssl.SSLContext | None = None,
) -> ThreadedAssociationServer:
    """Starts ``ae`` listening with TCP_NODELAY and without per-PDU debug logging."""
    server = ae.start_server(
        (host, port),
        block=False,
        ssl_context=ssl_context,
        evt_handlers=[*NODELAY_HANDLERS, *handlers],
    )
    assert server is not None
    share_contexts(server)
    # pynetdicom's standard handlers format every PDU and DIMSE message into
    # log lines; they cost time per instance and say nothing we record.
    for event in (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT):
        bound = server.get_handlers(event)
        for handler, _args in list(bound) if isinstance(bound, list) else []:
            server.unbind(event, handler)
    return server


def _tls_context(settings: Settings) -> ssl.SSLContext:
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ValueError("ingest_dicom_tls needs --tls-cert-file and --tls-key-file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_client_ca_file)
    return context


@dataclass(frozen=True)
class ScpConfig:
    """The SCP's settings, parsed and checked."""

    host: str
    port: int
    ae_title: str
    allowed_aes: tuple[str, ...]
    sop_classes: tuple[str, ...]
    store_dir: Path
    forward: ForwardTarget | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScpConfig:
        """Raises ValueError naming the bad setting."""
        forward = settings.ingest_dicom_forward
        return cls(
            host=settings.host,
            port=settings.ingest_dicom_port,
            ae_title=settings.ingest_dicom_ae_title,
            allowed_aes=_split(settings.ingest_dicom_allowed_aes),
            sop_classes=resolve_sop_classes(_split(settings.ingest_dicom_sop_classes)),
            store_dir=Path(settings.ingest_dicom_store_dir or settings.var_dir / "dicom"),
            forward=ForwardTarget.parse(forward) if forward else None,
            ssl_context=_tls_context(settings) if settings.ingest_dicom_tls else None,
        )


@dataclass
class _Session:
    association: Association
    stored: int = 0
    failed: int = 0


class DicomScp:
    """The C-STORE SCP of one Ingest server; start() and stop() from the event loop."""

    def __init__(self, config: ScpConfig, sink: EdgePublisher) -> None:
        self.config = config
        self._sink = sink
        self._store = FolderStore(config.store_dir)
        self._forwarder = (
            Forwarder(config.forward, config.ae_title, sink) if config.forward else None
        )
        self._sessions: dict[int, _Session] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None
        self._record_spans = spans_exported()
        self.port = 0

    def start(self) -> int:
        """Binds and starts serving; returns the bound port."""
        ae = make_storage_ae(self.config.ae_title, self.config.sop_classes, self.config.allowed_aes)
        handlers = [
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_C_STORE, self._on_store),
        ]
        if self._forwarder is not None:
            self._forwarder.start()
        self._server = start_storage_server(
            ae, self.config.host, self.config.port, handlers, self.config.ssl_context
        )
        self.port = int(self._server.server_address[1])
        log.info(
            "dicom scp serving",
            extra={
                "port": self.port,
                "ae_title": self.config.ae_title,
                "tls": self.config.ssl_context is not None,
                "allowed_aes": list(self.config.allowed_aes),
                "forward": self.config.forward.ae_title if self.config.forward else "",
            },
        )
        return self.port

    def stop(self) -> None:
        """Stops accepting, ends open associations, then drains the forwarder."""
        if self._server is not None:
            self._server.shutdown()
            for assoc in self._server.active_associations:
                assoc.abort()
            self._server = None
        if self._forwarder is not None:
            self._forwarder.stop()

    # -- association lifecycle ------------------------------------------

    def _on_accepted(self, event: DicomEvent) -> None:
        assoc = event.assoc
        association = Association.new(
            assoc.requestor.ae_title, assoc.acceptor.ae_title, str(assoc.requestor.address)
        )
        with self._lock:
            self._sessions[id(assoc)] = _Session(association)
        log.info(
            "dicom association accepted",
            extra={
                "correlation_id": association.association_id,
                "calling_ae_title": association.calling_ae_title,
                "source_ip": association.source_ip,
            },
        )

    def _on_rejected(self, event: DicomEvent) -> None:
        assoc = event.assoc
        log.warning(
            "dicom association rejected",
            extra={
                "calling_ae_title": str(assoc.requestor.ae_title).strip(),
                "called_ae_title": str(assoc.requestor.primitive.called_ae_title).strip()
                if assoc.requestor.primitive is not None
                else "",
                "source_ip": str(assoc.requestor.address),
            },
        )

    def _on_ended(self, event: DicomEvent) -> None:
        with self._lock:
            session = self._sessions.pop(id(event.assoc), None)
        if session is None:
            return
        log.info(
            "dicom association ended",
            extra={
                "correlation_id": session.association.association_id,
                "calling_ae_title": session.association.calling_ae_title,
                "how": "released" if event.event is evt.EVT_RELEASED else "aborted",
                "stored": session.stored,
                "failed": session.failed,
            },
        )

    def _session(self, event: DicomEvent) -> _Session:
        with self._lock:
            session = self._sessions.get(id(event.assoc))
        if session is None:  # not seen accepted (cannot happen with pynetdicom's order)
            self._on_accepted(event)
            with self._lock:
                session = self._sessions[id(event.assoc)]
        return session

    # -- C-STORE --------------------------------------------------------

    def _on_store(self, event: DicomEvent) -> int:
        session = self._session(event)
        association = session.association
        ctx = with_correlation_id(association.association_id)
        with entry_span(_tracer, "dicom.c_store", ctx, record=self._record_spans) as span:
            span.set_attribute(CORRELATION_ATTRIBUTE, association.association_id)
            span.set_attribute("dicom.calling_ae_title", association.calling_ae_title)
            status, ids, steps, path = self._receive_and_store(event)
            if steps[-1].failed:
                span.set_status(trace.StatusCode.ERROR, steps[-1].error)
            try:
                self._sink.publish_from_thread([step_event(association, ids, s) for s in steps])
            except Exception as exc:
                # Not durable means not accepted: the sender keeps the instance.
                log.error(
                    "dicom instance not recorded; refused",
                    extra={
                        "reason": type(exc).__name__,
                        "calling_ae_title": association.calling_ae_title,
                    },
                )
                span.set_status(trace.StatusCode.ERROR, "event log unavailable")
                session.failed += 1
                return STATUS_OUT_OF_RESOURCES
            if status != STATUS_SUCCESS:
                session.failed += 1
                log.warning(
                    "dicom instance refused",
                    extra={
                        "calling_ae_title": association.calling_ae_title,
                        "source_ip": association.source_ip,
                        "failed_stage": event_pb2.ProcessingStage.Name(steps[-1].stage),
                        "error": steps[-1].error,
                        "status": f"0x{status:04X}",
                    },
                )
                return status
            session.stored += 1
            if self._forwarder is not None and path is not None:
                self._forwarder.submit(
                    ForwardJob(
                        association,
                        ids,
                        path,
                        str(event.context.transfer_syntax),
                        otel_context.get_current(),
                    )
                )
            return STATUS_SUCCESS

    def _receive_and_store(
        self, event: DicomEvent
    ) -> tuple[int, Identifiers, list[Step], Path | None]:
        """(status, identifiers, steps, stored path) of one C-STORE request."""
        received = Step(event_pb2.PROCESSING_STAGE_RECEIVED)
        request = cast(C_STORE, event.request)
        stream = cast(BytesIO, request.DataSet)
        syntax = event.context.transfer_syntax
        try:
            if syntax.is_deflated:
                ids = read_identifiers(event.dataset)
            else:
                ids = read_encoded_identifiers(
                    stream, syntax.is_implicit_VR, syntax.is_little_endian
                )
        except UndecodableInstanceError as exc:
            return STATUS_CANNOT_DECODE, self._request_ids(event), [received.done(str(exc))], None
        except MalformedInstanceError as exc:
            return (
                STATUS_DOES_NOT_MATCH_SOP_CLASS,
                self._request_ids(event),
                [received.done(str(exc))],
                None,
            )
        except Exception as exc:  # pydicom's decoding errors have no common base
            error = f"data set cannot be decoded ({type(exc).__name__})"
            return STATUS_CANNOT_DECODE, self._request_ids(event), [received.done(error)], None
        received.done()
        stored = Step(event_pb2.PROCESSING_STAGE_STORED)
        # The data set is written as it arrived, behind the file meta
        # information; nothing is decoded and encoded again.
        header = part10_header(
            str(request.AffectedSOPClassUID or ids.sop_class_uid),
            str(request.AffectedSOPInstanceUID or ids.sop_instance_uid),
            str(syntax),
        )
        try:
            with stream.getbuffer() as body:
                path = self._store.write(ids, (header, body))
        except OSError as exc:
            stored.done(describe_os_error(exc))
            return STATUS_OUT_OF_RESOURCES, ids, [received, stored], None
        return STATUS_SUCCESS, ids, [received, stored.done()], path

    @staticmethod
    def _request_ids(event: DicomEvent) -> Identifiers:
        """What the command set says, for an instance whose data set is unusable."""
        request = cast(C_STORE, event.request)
        return Identifiers(
            sop_instance_uid=str(request.AffectedSOPInstanceUID or "").strip(),
            sop_class_uid=str(request.AffectedSOPClassUID or "").strip(),
        )
