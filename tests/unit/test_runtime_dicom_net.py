"""The pynetdicom settings the mesh's DICOM listeners share: contexts handed to each
association without a copy, and Nagle off on the accepted socket."""

from __future__ import annotations

import copy
import socket
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.events import Event

from corrmesh.cli.mesh import free_port
from corrmesh.ingest.dicom_scp import make_storage_ae, resolve_sop_classes, start_storage_server
from corrmesh.runtime.dicom_net import SharedContexts

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def test_a_deep_copy_of_shared_contexts_holds_the_same_contexts() -> None:
    ae = AE()
    ae.add_supported_context(VERIFICATION)
    ae.add_supported_context(CT_IMAGE_STORAGE)
    shared = SharedContexts(ae.supported_contexts)
    copied = copy.deepcopy(shared)
    assert copied == list(shared) and all(a is b for a, b in zip(copied, shared, strict=True))
    copied.pop()
    assert len(shared) == 2  # the copy is a list of its own


def test_the_storage_server_lends_its_contexts_and_turns_nagle_off() -> None:
    seen: dict[str, Any] = {}

    def accepted(event: Event) -> None:
        seen["contexts"] = event.assoc.acceptor.supported_contexts
        transport = event.assoc.dul.socket
        assert transport is not None and transport.socket is not None
        seen["nodelay"] = transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    port = free_port()
    server_ae = make_storage_ae("CORRMESH_IN", resolve_sop_classes(()))
    server = start_storage_server(
        server_ae, "127.0.0.1", port, [(evt.EVT_ACCEPTED, accepted), (evt.EVT_C_ECHO, lambda _e: 0)]
    )
    try:
        client = AE(ae_title="NETTEST")
        client.add_requested_context(VERIFICATION)
        client.add_requested_context(CT_IMAGE_STORAGE)
        assoc = client.associate("127.0.0.1", port, ae_title="CORRMESH_IN")
        try:
            assert assoc.is_established
            assert [str(c.abstract_syntax) for c in assoc.accepted_contexts] == [
                VERIFICATION,
                CT_IMAGE_STORAGE,
            ]
            assert int(assoc.send_c_echo().Status) == 0x0000
        finally:
            assoc.release()
    finally:
        server.shutdown()
    # Not a per-association copy of ~170 contexts with every transfer syntax each.
    assert all(a is b for a, b in zip(seen["contexts"], server.contexts, strict=True))
    assert seen["nodelay"]
