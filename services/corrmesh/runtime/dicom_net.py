"""pynetdicom settings every DICOM listener and client of the mesh shares.

* Nagle's algorithm off on each association's socket: with it on, a DIMSE
  exchange waits for the peer's delayed ACK, about 40 ms a round trip.
* A listener's supported presentation contexts handed to each association
  without a copy: pynetdicom deep-copies them for every association it accepts,
  25 to 45 ms for Ingest's storage contexts (168 SOP classes, each with every
  transfer syntax) and about 10 ms for the Spanner's, while negotiation only
  reads them and builds result contexts of its own.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer


def set_nodelay(event: Event) -> None:
    """EVT_CONN_OPEN handler: turns Nagle off on the association's socket."""
    transport = event.assoc.dul.socket
    sock = getattr(transport, "socket", None) if transport is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: Handlers for ``evt_handlers`` of any association or server.
NODELAY_HANDLERS: list[Any] = [(evt.EVT_CONN_OPEN, set_nodelay)]


class SharedContexts(list[Any]):
    """Presentation contexts whose deep copy is a new list of the same contexts."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


def share_contexts(server: ThreadedAssociationServer) -> None:
    """Lets ``server``'s associations use its supported contexts without copying them."""
    server.contexts = SharedContexts(server.contexts)
