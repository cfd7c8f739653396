"""Opaque page tokens for List methods (AIP-158).

A token encodes where the next page starts (a key of the listing's order) and
a fingerprint of the filter it was made for, so a token reused with another
filter is rejected instead of silently returning the wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from corrmesh.runtime.errors import FieldViolations

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def filter_fingerprint(*parts: Any) -> str:
    """A short digest of the request fields a token must stay bound to."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_page_token(position: Any, fingerprint: str) -> str:
    raw = json.dumps({"p": position, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str, violations: FieldViolations) -> Any:
    """The position in ``token``, or None for the first page; bad tokens become violations."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, bound = data["p"], data["f"]
    except (ValueError, KeyError, TypeError):
        violations.add("page_token", "not a token this service issued")
        return None
    if bound != fingerprint:
        violations.add("page_token", "was issued for a different filter")
        return None
    return position


def page_size(requested: int, violations: FieldViolations) -> int:
    """The page size to use; negative sizes are a violation, 0 means the default."""
    if requested < 0:
        violations.add("page_size", "must not be negative")
        return DEFAULT_PAGE_SIZE
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)
