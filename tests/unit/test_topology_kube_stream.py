"""Watch streams split into events whatever the chunking."""

from __future__ import annotations

import json

from corrmesh.topology.kube.client import split_lines


def test_lines_are_found_across_any_chunking() -> None:
    events = [
        {"type": "MODIFIED", "object": {"n": i, "text": "x" * (i * 37 % 200)}} for i in range(50)
    ]
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    for size in (1, 7, 64, 1000, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert [json.loads(line) for line in split_lines(chunks)] == events, size


def test_blank_lines_are_skipped_and_an_unfinished_line_is_not_an_event() -> None:
    assert list(split_lines([b"\n\na\n", b"\nb", b"c\n", b"d"])) == [b"a", b"bc"]
