"""Protobuf wire format, for responses assembled from cached bytes.

A GetImpact answer lists hundreds of resources, each with the path that
explains it. Filled in field by field that is thousands of Python calls;
instead each resource's ResourceRef is serialised once (see
``TopologyGraph.view``), each path extends its parent's bytes, and the answer
is one join parsed once in C. Only length-delimited and varint fields are
needed.
"""

from __future__ import annotations

#: Varints of small values, the lengths and distances most fields carry.
_SMALL = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    """``value`` (≥ 0) as a protobuf base-128 varint."""
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # most lengths of entries and paths
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
    """The key of a field: its number and wire type (0 varint, 2 length-delimited)."""
    return varint(field_number << 3 | wire_type)


def delimited(field_tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (message, string, bytes) with ``payload``."""
    return field_tag + varint(len(payload)) + payload
