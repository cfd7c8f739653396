"""Blocking DIMSE calls to one PACS with pynetdicom: C-FIND, C-MOVE, C-GET, C-STORE.

Every association sets TCP_NODELAY on its socket: pynetdicom never does, and
with Nagle on each request/response round trip stalls ~40 ms on delayed ACKs.
A C-FIND may run on an association kept from an earlier one (``pool``).
Callers run these functions in a worker thread.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydicom import Dataset
from pynetdicom import AE, StoragePresentationContexts, _config, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from corrmesh.runtime.dicom_net import NODELAY_HANDLERS
from corrmesh.spanner.datasets import decoded
from corrmesh.v1 import spanner_pb2 as pb

if TYPE_CHECKING:
    from corrmesh.spanner.pool import AssociationPool

PENDING = (0xFF00, 0xFF01)
CANCEL = 0xFE00


class SourceError(Exception):
    """A source could not answer: refused, aborted, a failure status or a timeout."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Cancelled(Exception):  # noqa: N818 - the state, like asyncio.CancelledError
    """The caller cancelled the operation while it ran."""


def quiet_pynetdicom() -> None:
    """Turns pynetdicom's own event logging off in this process. It formats every
    PDU, message and identifier (each match too) before handing the line to a
    logger that may drop it: about a fifth of the CPU a spanning query costs here,
    and identifiers hold patient names. (``pynetdicom._config`` is the library's
    documented configuration module, underscore and all.)"""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = False


@dataclass(frozen=True)
class Remote:
    """Where a PACS listens, and how to reach it."""

    ae_title: str
    host: str
    port: int
    tls: pb.TlsSettings | None = None

    @classmethod
    def of(cls, node: pb.DicomNode) -> Remote:
        return cls(node.ae_title, node.host, node.port, node.tls if node.tls.enabled else None)

    @property
    def key(self) -> tuple[str, str, int, bytes]:
        """Identifies the remote and how it is reached (TLS settings are not hashable)."""
        tls = self.tls.SerializeToString(deterministic=True) if self.tls is not None else b""
        return self.ae_title, self.host, self.port, tls


def _tls_args(remote: Remote) -> tuple[ssl.SSLContext, str] | None:
    if remote.tls is None:
        return None
    context = ssl.create_default_context(cafile=remote.tls.ca_cert_path or None)
    if remote.tls.cert_path:
        context.load_cert_chain(remote.tls.cert_path, remote.tls.key_path)
    return context, remote.host


def associate(
    ae: AE, remote: Remote, timeout: float, handlers: list[Any] | None = None
) -> Association:
    """An established association to ``remote`` with Nagle off; SourceError if refused."""
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    assoc = ae.associate(
        remote.host, remote.port, ae_title=remote.ae_title, tls_args=_tls_args(remote),
        evt_handlers=NODELAY_HANDLERS + (handlers or []),
    )  # fmt: skip
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise SourceError(f"association rejected by {remote.ae_title}")
    raise SourceError(f"cannot associate with {remote.ae_title} at {remote.host}:{remote.port}")


def _end(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()


# pynetdicom's release waits for the A-RELEASE-RP and then polls its threads down
# (~10 ms here); a C-FIND's answer is complete at its final status, so the
# release runs on these threads instead of delaying the answer.
_RELEASES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dimse-release")


def release_later(assoc: Association) -> None:
    """Releases ``assoc`` (when still established) on a release thread."""
    _RELEASES.submit(_end, assoc)


class _DroppedError(SourceError):
    """The association ended before the first response to a C-FIND."""


def find(
    remote: Remote,
    calling_ae: str,
    model_uid: str,
    identifier: Dataset,
    timeout: float,
    cancelled: threading.Event,
    pool: AssociationPool | None = None,
) -> list[Dataset]:
    """Every match of a C-FIND, decoded with its own character set.

    With ``pool``, the C-FIND runs on an idle association from it when there is
    one, and the association goes back to it after a complete answer. An idle
    association the source has dropped meanwhile (its own idle timeout, a
    restart) ends before the first response; that is no failure of the source,
    so the C-FIND is asked again, once, on a new association."""
    key = (remote.key, calling_ae, model_uid)
    done = release_later if pool is None else partial(pool.give_back, key)
    kept = pool.take(key) if pool is not None else None
    if kept is not None:
        kept.acse_timeout = kept.dimse_timeout = timeout
        try:
            return _find_on(kept, remote, model_uid, identifier, cancelled, done)
        except _DroppedError:
            if cancelled.is_set():
                raise Cancelled() from None
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(model_uid)
    return _find_on(associate(ae, remote, timeout), remote, model_uid, identifier, cancelled, done)


def _find_on(
    assoc: Association,
    remote: Remote,
    model_uid: str,
    identifier: Dataset,
    cancelled: threading.Event,
    done: Callable[[Association], None],
) -> list[Dataset]:
    """The C-FIND on ``assoc``; ``done`` gets the association after a complete
    answer, anything else ends it here."""
    matches: list[Dataset] = []
    answered = complete = False
    try:
        try:
            for status, match in assoc.send_c_find(identifier, model_uid):
                if cancelled.is_set():
                    assoc.abort()
                    raise Cancelled()
                if not answered and "Status" not in status:
                    raise _DroppedError(_no_status(remote, "C-FIND"))
                answered = True
                code = _status_of(status, remote, "C-FIND")
                if code in PENDING:
                    if match is not None:
                        matches.append(decoded(match))
                elif code == 0x0000:
                    complete = True
                    return matches
                else:
                    raise SourceError(f"C-FIND failed at {remote.ae_title}: 0x{code:04X}", code)
        except RuntimeError as exc:  # pynetdicom: the association is no longer established
            raise _DroppedError(_no_status(remote, "C-FIND")) from exc
        raise SourceError(f"C-FIND at {remote.ae_title} ended without a final status")
    finally:
        if complete:
            done(assoc)
        else:
            _end(assoc)


def _no_status(remote: Remote, service: str) -> str:
    return f"{service} at {remote.ae_title}: aborted or timed out without a status"


def _status_of(status: Dataset, remote: Remote, service: str) -> int:
    # An abort or timeout leaves an empty status: the source failed, whatever came before.
    if "Status" not in status:
        raise SourceError(_no_status(remote, service))
    return int(status.Status)


@dataclass
class Progress:
    """Sub-operation counts of a C-MOVE/C-GET."""

    remaining: int = 0
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: int = 0
    failed_uids: tuple[str, ...] = ()

    @classmethod
    def of(cls, status: Dataset) -> Progress:
        return cls(
            remaining=int(status.get("NumberOfRemainingSuboperations", 0) or 0),
            completed=int(status.get("NumberOfCompletedSuboperations", 0) or 0),
            failed=int(status.get("NumberOfFailedSuboperations", 0) or 0),
            warning=int(status.get("NumberOfWarningSuboperations", 0) or 0),
            status=int(status.get("Status", 0)),
        )


def move(
    remote: Remote,
    calling_ae: str,
    model_uid: str,
    identifier: Dataset,
    destination: str,
    timeout: float,
    on_progress: Callable[[Progress], None],
) -> Progress:
    """A C-MOVE at ``remote`` to ``destination``; the final counts and status."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(model_uid)
    assoc = associate(ae, remote, timeout)
    try:
        return _drain(assoc.send_c_move(identifier, destination, model_uid), remote, on_progress)
    finally:
        _end(assoc)


def get(
    remote: Remote,
    calling_ae: str,
    model_uid: str,
    identifier: Dataset,
    storage_classes: Iterable[str],
    timeout: float,
    on_instance: Callable[[Dataset], int],
    on_progress: Callable[[Progress], None],
) -> Progress:
    """A C-GET at ``remote``; each instance goes to ``on_instance``, whose return is
    the C-STORE status sent back (0x0000 to accept)."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(model_uid)
    roles: list[Any] = []
    classes = {uid for uid in storage_classes if uid}
    if not classes or len(classes) < len(set(storage_classes)):
        # Some sources (dcmqrscp) do not return SOP Class UID: offer the common ones.
        classes |= {str(c.abstract_syntax) for c in StoragePresentationContexts}
    for uid in sorted(classes)[:127]:
        ae.add_requested_context(uid)
        roles.append(build_role(uid, scp_role=True))

    def store(event: Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        return on_instance(dataset)

    assoc = ae.associate(
        remote.host, remote.port, ae_title=remote.ae_title, tls_args=_tls_args(remote),
        ext_neg=roles, evt_handlers=[*NODELAY_HANDLERS, (evt.EVT_C_STORE, store)],
    )  # fmt: skip
    if not assoc.is_established:
        raise SourceError(f"cannot associate with {remote.ae_title} for C-GET")
    try:
        return _drain(assoc.send_c_get(identifier, model_uid), remote, on_progress)
    finally:
        _end(assoc)


def _drain(responses: Any, remote: Remote, on_progress: Callable[[Progress], None]) -> Progress:
    last = Progress()
    for status, identifier in responses:
        code = _status_of(status, remote, "retrieve")
        last = Progress.of(status)
        if code in PENDING:
            on_progress(last)
            continue
        failed = identifier.get("FailedSOPInstanceUIDList", []) if identifier else []
        if isinstance(failed, str):
            failed = [failed] if failed else []
        last.failed_uids = tuple(str(u).strip(" \x00") for u in failed)
        return last
    raise SourceError(f"retrieve at {remote.ae_title} ended without a final status")


def store(
    remote: Remote, calling_ae: str, datasets: list[Dataset], timeout: float
) -> dict[str, int]:
    """C-STOREs ``datasets`` to ``remote`` in one association; SOP Instance UID -> status."""
    ae = AE(ae_title=calling_ae)
    for pair in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}:
        ae.add_requested_context(*pair)
    assoc = associate(ae, remote, timeout)
    results: dict[str, int] = {}
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            results[str(dataset.SOPInstanceUID)] = int(status.get("Status", 0xC000))
    finally:
        _end(assoc)
    return results
