"""Paging for Spanner's List methods: keyset positions inside runtime page tokens.

A position is the (timestamp, id) of the last row of a page; timestamps are
UTC ISO strings in the token, so a token survives a restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from corrmesh.runtime.errors import FieldViolations, abort_invalid
from corrmesh.runtime.paging import decode_page_token, encode_page_token, page_size
from corrmesh.spanner.store import Position


async def page_request(
    context: grpc.aio.ServicerContext[Any, Any], requested_size: int, token: str, fingerprint: str
) -> tuple[int, Position | None]:
    """The page size and resume position of a List request; bad ones abort the call."""
    violations = FieldViolations()
    size = page_size(requested_size, violations)
    raw = decode_page_token(token, fingerprint, violations)
    after = _position(raw, violations) if raw is not None else None
    if violations:
        await abort_invalid(context, violations)
    return size, after


def _position(raw: Any, violations: FieldViolations) -> Position | None:
    try:
        moment, last_id = raw
        parsed = datetime.fromisoformat(moment)
        if not isinstance(last_id, str):
            raise TypeError(last_id)
    except (TypeError, ValueError):
        violations.add("page_token", "not a token this service issued")
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), last_id


def page_token_for(position: Position | None, fingerprint: str) -> str:
    """The next_page_token for a page ending at ``position`` (empty at the end)."""
    if position is None:
        return ""
    moment, last_id = position
    return encode_page_token([moment.isoformat(), last_id], fingerprint)
