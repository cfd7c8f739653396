"""Which resources may be joined by edges other than NODE: a union-find.

It covers every non-NODE edge added since it was last rebuilt. Removing an
edge does not split a set, so the sets over-approximate connectivity: two
resources in different sets are certainly not joined (the cheap answer for
most pairs of a large graph), two in the same set may be. The graph rebuilds
it once removals pile up (``stale``), to stay sharp.
"""

from __future__ import annotations

from corrmesh.topology.keys import Key


class Components:
    """Parent links of a union-find over graph keys."""

    def __init__(self) -> None:
        #: Parent of each key that has one; a key absent is its own root.
        self.links: dict[Key, Key] = {}
        #: Edges removed since the sets were built.
        self.stale = 0

    def find(self, key: Key) -> Key:
        """The root of ``key``'s set (compressing the path to it)."""
        links = self.links
        root = key
        while (parent := links.get(root, root)) != root:
            root = parent
        while key != root:  # path compression
            links[key], key = root, links[key]
        return root

    def union(self, a: Key, b: Key) -> None:
        """Joins the sets of ``a`` and ``b``."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.links[root_a] = root_b
