"""Placing a group of batches in the log: sequences, duplicates and per-batch results.

Shared by both ways the log appends (SQLAlchemy, and SQLite's driver directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from corrmesh.v1 import event_pb2


@dataclass(frozen=True, slots=True)
class Appended:
    """Where one event of an append ended up."""

    sequence: int
    event_id: str
    correlation_id: str
    #: The event_id was already in the log; nothing new was stored.
    duplicate: bool


def assign_sequences(
    batches: Sequence[Sequence[event_pb2.Event]],
    known: dict[str, tuple[int, str]],
    head: int,
    ingested_at: timestamp_pb2.Timestamp,
) -> tuple[list[list[Appended]], list[event_pb2.Event], int]:
    """(results per batch, events to store, new head) for ``batches`` after ``head``.

    ``known`` maps event ids already in the log to (sequence, correlation id);
    an event whose id is known, or repeats an earlier one of the group, is a
    duplicate. Events to store get ``sequence`` and ``ingested_at`` set in place.
    """
    stored: list[event_pb2.Event] = []
    results: list[list[Appended]] = []
    for batch in batches:
        out: list[Appended] = []
        for event in batch:
            first = known.get(event.event_id)
            if first is not None:
                out.append(Appended(first[0], event.event_id, first[1], True))
                continue
            head += 1
            event.sequence = head
            event.ingested_at.CopyFrom(ingested_at)
            stored.append(event)
            known[event.event_id] = (head, event.correlation_id)
            out.append(Appended(head, event.event_id, event.correlation_id, False))
        results.append(out)
    return results, stored, head
