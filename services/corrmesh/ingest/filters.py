"""EventFilter as SQL conditions on the log's columns.

Every field of the filter maps to a column, so matching happens in the
database (on indexes where the column has one) and never in Python.
The time bounds form a half-open interval: ``occurred_after <= occurred_at <
occurred_before``, so consecutive windows neither overlap nor leave gaps.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from sqlalchemy import ColumnElement

from corrmesh.ingest.models import EventRecord
from corrmesh.v1 import event_pb2, ingest_pb2


def _utc(timestamp: timestamp_pb2.Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def filter_conditions(event_filter: ingest_pb2.EventFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions selecting what ``event_filter`` matches (empty: everything)."""
    conditions: list[ColumnElement[bool]] = []
    in_lists = (
        (EventRecord.domain, [int(d) for d in event_filter.domains]),
        (EventRecord.source, list(event_filter.sources)),
        (EventRecord.correlation_id, list(event_filter.correlation_ids)),
        (EventRecord.cluster, list(event_filter.clusters)),
        (EventRecord.namespace, list(event_filter.namespaces)),
        (EventRecord.type, list(event_filter.types)),
    )
    for column, values in in_lists:
        if len(values) == 1:
            conditions.append(column == values[0])
        elif values:
            conditions.append(column.in_(values))
    if event_filter.min_severity != event_pb2.SEVERITY_UNSPECIFIED:
        conditions.append(EventRecord.severity >= int(event_filter.min_severity))
    if event_filter.HasField("occurred_after"):
        conditions.append(EventRecord.occurred_at >= _utc(event_filter.occurred_after))
    if event_filter.HasField("occurred_before"):
        conditions.append(EventRecord.occurred_at < _utc(event_filter.occurred_before))
    return conditions
