"""The listeners Spanner will run: its DIMSE SCP and its DICOMweb endpoint.

Until the listener work lands, both are reported as configured but stopped.
"""

from __future__ import annotations

from corrmesh.runtime.settings import (
    SPANNER_DICOM_AE_TITLE,
    SPANNER_DICOM_PORT,
    SPANNER_DICOMWEB_PORT,
    Settings,
)
from corrmesh.v1 import spanner_pb2

DIMSE_LISTENER_ID = "dimse-scp"
DICOMWEB_LISTENER_ID = "dicomweb"


def configured_listeners(settings: Settings) -> list[spanner_pb2.Listener]:
    """The two listeners with their default addresses, in state STOPPED."""
    return [
        spanner_pb2.Listener(
            listener_id=DIMSE_LISTENER_ID,
            kind=spanner_pb2.LISTENER_KIND_DIMSE,
            state=spanner_pb2.LISTENER_STATE_STOPPED,
            host=settings.host,
            port=SPANNER_DICOM_PORT,
            ae_title=SPANNER_DICOM_AE_TITLE,
        ),
        spanner_pb2.Listener(
            listener_id=DICOMWEB_LISTENER_ID,
            kind=spanner_pb2.LISTENER_KIND_DICOMWEB,
            state=spanner_pb2.LISTENER_STATE_STOPPED,
            host=settings.host,
            port=SPANNER_DICOMWEB_PORT,
        ),
    ]
