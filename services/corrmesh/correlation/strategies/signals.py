"""The elementary signals strategies are built from: time, text, wording.

Kept apart from the strategies so that ``combined`` reads exactly the same
numbers as ``temporal``, ``pattern``, ``source`` and ``fingerprint`` do.
"""

from __future__ import annotations

import math

from rapidfuzz.distance import Levenshtein

from corrmesh.correlation.window import EventInfo, title_tokens

#: Both strings at most this long: edit distance joins token Jaccard, because
#: one changed word of a short title moves Jaccard too far ("disk full" vs
#: "disk ful").
SHORT_TEXT = 24
TITLE_SHARE = 0.6
DESCRIPTION_SHARE = 0.3
SAME_SEVERITY_BONUS = 0.1
SAME_TYPE_BONUS = 0.1


def temporal_score(a_us: int, b_us: int, window_us: int) -> float:
    """``e^(-3·Δt/window)`` inside the window, 0 outside (incident-correlation-engine.md)."""
    delta = abs(a_us - b_us)
    if delta > window_us or window_us <= 0:
        return 0.0
    return math.exp(-3.0 * delta / window_us)


def seconds_apart(a_us: int, b_us: int) -> str:
    """``"12 s apart"``: whole seconds, one decimal below ten seconds."""
    seconds = abs(a_us - b_us) / 1_000_000
    rounded = round(seconds, 1) if seconds < 10 else round(seconds)
    return f"{rounded:g} s apart"


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def text_similarity(a: str, a_tokens: frozenset[str], b: str, b_tokens: frozenset[str]) -> float:
    """Token Jaccard; for two short strings, the better of it and edit-distance similarity."""
    if not a or not b:
        return 0.0
    similarity = jaccard(a_tokens, b_tokens)
    if similarity < 1.0 and len(a) <= SHORT_TEXT and len(b) <= SHORT_TEXT:
        edit = Levenshtein.normalized_similarity(a.lower(), b.lower())
        similarity = max(similarity, edit)
    return similarity


def title_similarity(a: EventInfo, b: EventInfo) -> float:
    return text_similarity(a.title, a.tokens, b.title, b.tokens)


def pattern_score(a: EventInfo, b: EventInfo) -> tuple[float, float]:
    """(pattern score, title similarity): 60% title, 30% description, +10% each for
    the same severity and the same type, capped at 1."""
    title = title_similarity(a, b)
    score = title * TITLE_SHARE
    if a.description and b.description:
        description = text_similarity(
            a.description, title_tokens(a.description), b.description, title_tokens(b.description)
        )
        score += description * DESCRIPTION_SHARE
    if a.severity and a.severity == b.severity:
        score += SAME_SEVERITY_BONUS
    if a.type and a.type == b.type:
        score += SAME_TYPE_BONUS
    return min(score, 1.0), title


def percent(value: float) -> str:
    return f"{round(value * 100)}%"
