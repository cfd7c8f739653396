"""Folding duplicate matches (same normalised key at the query level) from several sources.

- FIRST_WINS keeps the first match that arrived.
- MOST_COMPLETE keeps the match with the most attributes really carrying a
  value; ties go to the preferred source (lower priority number), then arrival.
- MERGE_ALL builds one match attribute by attribute: each attribute comes from
  the preferred source that has a value for it.

Only colliding keys pay for counting or merging, so folding 100,000 mostly
distinct matches costs little more than a dict insert each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

from corrmesh.spanner.datasets import completeness, elements, is_present
from corrmesh.v1 import spanner_pb2 as pb


class Candidate(NamedTuple):
    """One source's version of a match (a tuple: one is made per match)."""

    dataset: Dataset
    node_id: str
    priority: int
    arrival: int


@dataclass(slots=True)
class Folded:
    """A deduplicated match and every source that returned it, preferred first."""

    key: str
    dataset: Dataset
    node_ids: tuple[str, ...]


@dataclass
class Deduplicator:
    """Collects candidates per key and folds them by ``strategy``.

    Memory per match is one tuple: the first candidate of each key is kept on
    its own, and only colliding keys get a list. Fewer objects per match keep
    the garbage collector out of a 100,000-match fold.
    """

    strategy: int
    _first: dict[str, Candidate] = field(default_factory=dict)
    _more: dict[str, list[Candidate]] = field(default_factory=dict)
    _alone: dict[str, tuple[str]] = field(default_factory=dict)
    before: int = 0

    def add(self, key: str, dataset: Dataset, node_id: str, priority: int) -> bool:
        """Adds one match; True when its key was new (FIRST_WINS may stream it at once)."""
        self.before += 1
        candidate = Candidate(dataset, node_id, priority, self.before)
        first = self._first.setdefault(key, candidate)
        if first is candidate:
            return True
        more = self._more.get(key)
        if more is None:
            self._more[key] = [first, candidate]
        else:
            more.append(candidate)
        return False

    def __len__(self) -> int:
        return len(self._first)

    def fold(self, key: str) -> Folded:
        """The folded match for ``key``."""
        group = self._more.get(key)
        if group is None:  # the common case: no ranking, counting or merging
            first = self._first[key]
            # One shared (node_id,) per source instead of a new list per match.
            alone = self._alone.get(first.node_id) or self._alone.setdefault(
                first.node_id, (first.node_id,)
            )
            return Folded(key, first.dataset, alone)
        by_rank = sorted(group, key=_rank)
        node_ids = tuple(dict.fromkeys(c.node_id for c in by_rank))
        if self.strategy == pb.DEDUPLICATION_STRATEGY_FIRST_WINS:
            return Folded(key, group[0].dataset, node_ids)
        if self.strategy == pb.DEDUPLICATION_STRATEGY_MERGE_ALL:
            return Folded(key, merge(by_rank), node_ids)
        best = max(by_rank, key=lambda c: (completeness(c.dataset), -c.priority, -c.arrival))
        return Folded(key, best.dataset, node_ids)

    def results(self) -> Iterator[Folded]:
        """Every folded match, in order of first arrival, folded as it is taken."""
        fold = self.fold
        return (fold(key) for key in self._first)


def _rank(candidate: Candidate) -> tuple[int, int]:
    return (candidate.priority, candidate.arrival)


def merge(ranked: list[Candidate]) -> Dataset:
    """Attribute by attribute, the value of the first (preferred) candidate that has one.

    The preferred candidate's own Dataset comes back when the others add nothing
    (building a Dataset costs more than the whole comparison)."""
    base = ranked[0].dataset
    merged: dict[BaseTag, DataElement] | None = None
    for candidate in ranked[1:]:
        for element in elements(candidate.dataset):
            if not is_present(element):
                continue
            current = merged.get(element.tag) if merged is not None else base.get_item(element.tag)
            if current is not None and is_present(_converted(base, current)):
                continue
            if merged is None:
                merged = {e.tag: e for e in elements(base)}
            merged[element.tag] = element
    if merged is None:
        return base
    # A Dataset over the dict, without copying each element in through __setitem__.
    return Dataset(cast("dict[BaseTag, DataElement | RawDataElement]", merged))


def _converted(dataset: Dataset, element: DataElement | RawDataElement) -> DataElement:
    return element if isinstance(element, DataElement) else dataset[element.tag]
