"""Destinations for received instances: a folder, and a PACS to forward to by C-STORE.

The folder is always written: it is the durable copy that the C-STORE
response vouches for, and the spool the forwarder reads from. Forwarding
runs behind the response, in its own thread, so a slow or absent PACS never
holds up a sending modality; each forwarded (or failed) instance is recorded
as a FORWARDED step on the association's correlation id, continuing the
instance's trace.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from corrmesh.ingest.dicom_steps import Association, Identifiers, Step, step_event
from corrmesh.ingest.edge import EdgePublisher
from corrmesh.runtime.dicom_net import NODELAY_HANDLERS
from corrmesh.runtime.tracing import CORRELATION_ATTRIBUTE, tracer
from corrmesh.v1 import event_pb2

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

_SAFE_UID = re.compile(r"^[0-9.]{1,64}$")
#: Instances per forwarding association (and per publish of their steps).
FORWARD_BATCH = 200
#: A presentation context per (SOP class, transfer syntax); DICOM allows 128.
MAX_CONTEXTS = 128
#: C-STORE statuses that mean the PACS has the instance (success and warnings).
_STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


def describe_os_error(exc: OSError) -> str:
    """An error message without the path (paths carry UIDs, and say nothing new)."""
    return f"{type(exc).__name__}: {exc.strerror or 'I/O error'}"


def _file_name(uid: str) -> str:
    # UIDs come from the sender: never let one name a path outside the folder.
    if _SAFE_UID.match(uid) and ".." not in uid:
        return uid
    return "x" + hashlib.sha256(uid.encode()).hexdigest()[:40]


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    """One File Meta element (group 0002), explicit VR little endian (PS3.5 7.1.2)."""
    if vr == b"OB":  # a VR with a 2-byte reserved field and a 4-byte length
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _even(value: str, pad: bytes) -> bytes:
    raw = value.strip().encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


_PREAMBLE = b"\x00" * 128 + b"DICM"
_META_VERSION = _meta_element(0x0001, b"OB", b"\x00\x01")
_META_IMPLEMENTATION = _meta_element(
    0x0012, b"UI", _even(PYNETDICOM_IMPLEMENTATION_UID, b"\x00")
) + _meta_element(0x0013, b"SH", _even(PYNETDICOM_IMPLEMENTATION_VERSION, b" "))


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, prefix and File Meta Information of a Part 10 file (PS3.10 7.1).

    The same elements pynetdicom's ``Event.encoded_dataset()`` writes, put
    together directly: through pydicom's element machinery they cost the SCP
    more per instance than everything else it does with the data set.
    """
    body = b"".join(
        (
            _META_VERSION,
            _meta_element(0x0002, b"UI", _even(sop_class_uid, b"\x00")),
            _meta_element(0x0003, b"UI", _even(sop_instance_uid, b"\x00")),
            _meta_element(0x0010, b"UI", _even(transfer_syntax_uid, b"\x00")),
            _META_IMPLEMENTATION,
        )
    )
    return _PREAMBLE + _meta_element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def _write_all(fd: int, views: list[memoryview]) -> None:
    """Writes every view, in one system call unless the kernel takes less."""
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


#: Folders known to exist, remembered so each instance costs no mkdir; forgotten
#: in bulk past this many (a long-running SCP sees ever new series).
_KNOWN_FOLDERS = 4096


class FolderStore:
    """Writes instances as DICOM files under ``<root>/<study>/<series>/<instance>.dcm``."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self._fsync = fsync
        self._folders: set[Path] = set()

    def path_for(self, ids: Identifiers) -> Path:
        return (
            self.root
            / _file_name(ids.study_instance_uid)
            / _file_name(ids.series_instance_uid)
            / (_file_name(ids.sop_instance_uid) + ".dcm")
        )

    def write(self, ids: Identifiers, chunks: Sequence[bytes | memoryview]) -> Path:
        """Writes ``chunks`` (together a Part 10 file) atomically; raises OSError when it cannot."""
        path = self.path_for(ids)
        folder = path.parent
        if folder not in self._folders:
            self._make_folder(folder)
            if len(self._folders) >= _KNOWN_FOLDERS:
                self._folders.clear()
            self._folders.add(folder)
        try:
            self._write_new(path, chunks)
        except FileNotFoundError:
            # The folder went away behind our back (a clean-up): make it again.
            self._folders.discard(folder)
            self._make_folder(folder)
            self._write_new(path, chunks)
        return path

    def _make_folder(self, folder: Path) -> None:
        """Creates ``folder`` and, with fsync on, makes its entry and its parents' durable."""
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        if self._fsync:
            for created in missing:
                _fsync_directory(created.parent)

    def _write_new(self, path: Path, chunks: Sequence[bytes | memoryview]) -> None:
        temporary = path.with_name(f".{path.name}.{threading.get_ident()}.part")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, [memoryview(chunk) for chunk in chunks])
                if self._fsync:
                    # The C-STORE success response promises the instance is kept.
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            if self._fsync:
                # The new name is a change to the folder: without this a power
                # loss could leave an acknowledged instance under its .part name.
                _fsync_directory(path.parent)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise


def _fsync_directory(folder: Path) -> None:
    """Flushes ``folder``'s entries (names added or renamed) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ForwardTarget:
    """A PACS to forward to, written ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ForwardTarget:
        try:
            ae_title, address = text.split("@", 1)
            host, port = address.rsplit(":", 1)
            target = cls(ae_title.strip(), host.strip("[]"), int(port))
        except ValueError:
            raise ValueError(f"forward target {text!r} is not AE@host:port") from None
        if not target.ae_title or len(target.ae_title) > 16 or not target.host:
            raise ValueError(f"forward target {text!r} is not AE@host:port")
        return target


@dataclass(frozen=True, slots=True)
class ForwardJob:
    association: Association
    ids: Identifiers
    path: Path
    transfer_syntax: str
    #: The context of the instance's C-STORE span, so the forward continues its trace.
    trace: Context


class Forwarder:
    """Sends stored instances to one PACS from a thread of its own."""

    def __init__(self, target: ForwardTarget, local_ae_title: str, sink: EdgePublisher) -> None:
        self.target = target
        self._local_ae_title = local_ae_title
        self._sink = sink
        self._queue: queue.Queue[ForwardJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dicom-forwarder", daemon=True)
        self._thread.start()

    def submit(self, job: ForwardJob) -> None:
        self._queue.put(job)

    def stop(self, timeout: float = 10.0) -> None:
        """Sends what is queued (within ``timeout``), then ends the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            contexts = {(first.ids.sop_class_uid, first.transfer_syntax)}
            while len(batch) < FORWARD_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                contexts.add((job.ids.sop_class_uid, job.transfer_syntax))
                if len(contexts) > MAX_CONTEXTS:
                    self._queue.put(job)  # the next association proposes it
                    break
                batch.append(job)
            try:
                self._forward(batch)
            except Exception:  # the thread must outlive any one batch
                log.exception("forwarding failed", extra={"instances": len(batch)})

    def _forward(self, batch: list[ForwardJob]) -> None:
        ae = AE(self._local_ae_title)
        for sop_class, syntax in {(j.ids.sop_class_uid, j.transfer_syntax) for j in batch}:
            ae.add_requested_context(sop_class, syntax)
        started = Step(event_pb2.PROCESSING_STAGE_FORWARDED)
        assoc = ae.associate(
            self.target.host,
            self.target.port,
            ae_title=self.target.ae_title,
            evt_handlers=NODELAY_HANDLERS,
        )
        steps: list[Step] = []
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "no association"
            for _ in batch:
                steps.append(
                    Step(started.stage, started.started_ns).done(
                        f"{reason} by {self.target.ae_title}"
                    )
                )
        else:
            try:
                for job in batch:
                    step = Step(event_pb2.PROCESSING_STAGE_FORWARDED)
                    steps.append(step.done(self._send(assoc, job)))
            finally:
                assoc.release()
        failed = sum(step.failed for step in steps)
        if failed:
            log.warning(
                "instances not forwarded",
                extra={"failed": failed, "instances": len(batch), "pacs": self.target.ae_title},
            )
        self._record(batch, steps)

    def _send(self, assoc: Any, job: ForwardJob) -> str:
        """Sends one instance; returns "" on success, otherwise what went wrong."""
        try:
            status = assoc.send_c_store(job.path)
        except OSError as exc:
            return describe_os_error(exc)
        except (ValueError, RuntimeError) as exc:
            return f"cannot send: {type(exc).__name__}"
        code = getattr(status, "Status", None)
        if code is None:
            return "no response from the PACS"
        return "" if code in _STORED_STATUSES else f"PACS answered status 0x{code:04X}"

    def _record(self, batch: list[ForwardJob], steps: list[Step]) -> None:
        """Publishes the batch's steps at once, in a span linked to each instance's trace."""
        links = []
        for job in batch:
            span_context = trace.get_current_span(job.trace).get_span_context()
            if span_context.is_valid:
                links.append(trace.Link(span_context))
        events = [step_event(j.association, j.ids, s) for j, s in zip(batch, steps, strict=True)]
        with _tracer.start_as_current_span("dicom.forward", links=links) as span:
            span.set_attribute("dicom.instances", len(batch))
            span.set_attribute("dicom.failed", sum(s.failed for s in steps))
            associations = {job.association.association_id for job in batch}
            if len(associations) == 1:
                span.set_attribute(CORRELATION_ATTRIBUTE, next(iter(associations)))
            try:
                self._sink.publish_from_thread(events)
            except Exception:
                log.exception("forward steps not recorded", extra={"instances": len(batch)})
