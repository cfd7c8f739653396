"""The in-memory relationship graph, kind-agnostic.

Nodes are ``Resource`` messages keyed as :mod:`corrmesh.topology.keys`
describes (uid when present, else cluster/kind/namespace/name). Edges are
typed and directed as ``EdgeType`` documents in topology.proto:

===========  ==========================================  ==========================
edge type    from -> to                                  failure propagates
===========  ==========================================  ==========================
OWNER        owner -> owned (Deployment -> ReplicaSet)   to -> from (owned failing
                                                         affects its owner)
SELECTOR     Service -> Pod it selects                   to -> from (pod -> service)
ENDPOINT     Service/EndpointSlice -> Pod                to -> from (pod -> service)
CONFIG       ConfigMap/Secret -> Pod using it            from -> to (config -> pod)
VOLUME       PersistentVolumeClaim -> Pod mounting it    from -> to (pvc -> pod)
NODE         Node -> Pod scheduled on it                 from -> to (node -> pod)
DEPENDENCY   dependent -> dependency (api -> mysql)      to -> from (mysql -> api)
===========  ==========================================  ==========================

:data:`PROPAGATES_FORWARD` encodes the last column; impact analysis
(:mod:`corrmesh.topology.impact`) walks each edge type only in that direction.

Storage is plain dicts: per resource, per direction, per edge type, an
insertion-ordered ``dict[Key, None]`` of neighbours, so every answer is
deterministic. An edge needs both ends in the graph; deleting a resource
removes its edges and returns them so callers can log the removals.
The graph is not thread-safe: the server mutates it only on the event loop.

This module is the storage, its indexes and one-edge lookups (including
the per-resource caches the hot paths read); walks of several edges
(owner chains, neighbourhoods, paths) are in :mod:`corrmesh.topology.walks`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from corrmesh.topology.components import Components
from corrmesh.topology.keys import Key, NameKey, key_of, name_key_of
from corrmesh.topology.wire import varint
from corrmesh.v1 import event_pb2, topology_pb2

EdgeType = int
#: (from, to, type) as stored.
EdgeKey = tuple[Key, Key, EdgeType]
Adjacency = dict[Key, dict[EdgeType, dict[Key, None]]]
#: A resource's ResourceRef serialised with its length prefix, its kind, its name.
RefView = tuple[bytes, str, str]

OWNER = topology_pb2.EDGE_TYPE_OWNER
NODE = topology_pb2.EDGE_TYPE_NODE
ALL_EDGE_TYPES: tuple[EdgeType, ...] = tuple(
    v for v in topology_pb2.EdgeType.values() if v != topology_pb2.EDGE_TYPE_UNSPECIFIED
)
#: For each edge type: True when a failure of ``from`` affects ``to``;
#: False when a failure of ``to`` affects ``from``.
PROPAGATES_FORWARD: dict[EdgeType, bool] = {
    topology_pb2.EDGE_TYPE_OWNER: False,
    topology_pb2.EDGE_TYPE_SELECTOR: False,
    topology_pb2.EDGE_TYPE_ENDPOINT: False,
    topology_pb2.EDGE_TYPE_CONFIG: True,
    topology_pb2.EDGE_TYPE_VOLUME: True,
    topology_pb2.EDGE_TYPE_NODE: True,
    topology_pb2.EDGE_TYPE_DEPENDENCY: False,
}

_FORWARD = tuple(t for t, forward in PROPAGATES_FORWARD.items() if forward)
_BACKWARD = tuple(t for t, forward in PROPAGATES_FORWARD.items() if not forward)


class TopologyGraph:
    """Resources and typed directed edges between them."""

    def __init__(self) -> None:
        self.resources: dict[Key, topology_pb2.Resource] = {}
        self._by_name: dict[NameKey, dict[Key, None]] = {}
        self._out: Adjacency = {}
        self._in: Adjacency = {}
        self._degree: dict[Key, int] = {}
        #: Bumped on every mutation; caches of derived answers compare it.
        self.version = 0
        #: Which resources may be joined by edges other than NODE (see linked()).
        self._components = Components()
        self._edges = 0
        # Derived per resource on first use and dropped when it changes, so
        # queries touching hundreds of resources read them from one dict.
        self._spread: dict[Key, tuple[Key, ...]] = {}
        self._views: dict[Key, RefView] = {}

    # ---- resources -------------------------------------------------------

    def resolve(self, ref: event_pb2.ResourceRef) -> Key | None:
        """The key of the resource ``ref`` names, or None when it is not in the graph.

        A ref with a uid also finds a resource known only by name (a declared
        service an event names with its uid); it never finds another
        incarnation with a different uid.
        """
        if ref.uid:
            key: Key = ("uid", ref.uid)
            if key in self.resources:
                return key
        candidates = self._by_name.get(name_key_of(ref))
        if not candidates:
            return None
        for candidate in reversed(candidates):
            if not ref.uid or candidate[0] != "uid":
                return candidate
        return None

    def find_name(self, name: NameKey) -> Key | None:
        """The resource named ``name`` (cluster, kind, namespace, name), preferring
        an observed one (with a uid) to a declared one; None when there is none."""
        candidates = self._by_name.get(name)
        if not candidates:
            return None
        for candidate in reversed(candidates):
            if candidate[0] == "uid":
                return candidate
        return next(reversed(candidates))

    def get(self, ref: event_pb2.ResourceRef) -> topology_pb2.Resource | None:
        key = self.resolve(ref)
        return None if key is None else self.resources[key]

    def upsert_resource(self, resource: topology_pb2.Resource) -> Key:
        """Adds or replaces a resource; its edges stay. Returns its key."""
        key = key_of(resource.ref)
        previous = self.resources.get(key)
        name = name_key_of(resource.ref)
        if previous is not None and name_key_of(previous.ref) == name:
            # The most recently upserted of several resources of one name comes last.
            keys = self._by_name[name]
            if len(keys) > 1:
                del keys[key]
                keys[key] = None
        else:
            if previous is not None:
                self._unindex_name(previous, key)
            self._by_name.setdefault(name, {})[key] = None
        self.resources[key] = resource
        self._views.pop(key, None)
        self.version += 1
        return key

    def delete_resource(self, key: Key) -> list[EdgeKey]:
        """Removes a resource and its edges; returns the removed edges."""
        resource = self.resources.pop(key, None)
        if resource is None:
            return []
        removed = list(self.edges_of(key))
        for edge in removed:
            self.remove_edge(*edge)
        self._unindex_name(resource, key)
        self._out.pop(key, None)
        self._in.pop(key, None)
        self._degree.pop(key, None)
        self._spread.pop(key, None)
        self._views.pop(key, None)
        self.version += 1
        return removed

    def _unindex_name(self, resource: topology_pb2.Resource, key: Key) -> None:
        name = name_key_of(resource.ref)
        keys = self._by_name.get(name)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_name[name]

    # ---- edges -----------------------------------------------------------

    def add_edge(self, source: Key, target: Key, edge_type: EdgeType) -> bool:
        """Adds an edge; False when it already existed. Both ends must exist."""
        if source == target:
            raise ValueError("an edge needs two different resources")
        if source not in self.resources or target not in self.resources:
            raise KeyError("both ends of an edge must be in the graph")
        targets = self._out.setdefault(source, {}).setdefault(edge_type, {})
        if target in targets:
            return False
        targets[target] = None
        self._in.setdefault(target, {}).setdefault(edge_type, {})[source] = None
        self._degree[source] = self._degree.get(source, 0) + 1
        self._degree[target] = self._degree.get(target, 0) + 1
        self._spread.pop(source, None)
        self._spread.pop(target, None)
        if edge_type != NODE:
            self._components.union(source, target)
        self._edges += 1
        self.version += 1
        return True

    def remove_edge(self, source: Key, target: Key, edge_type: EdgeType) -> bool:
        """Removes an edge; False when there was none."""
        targets = self._out.get(source, {}).get(edge_type)
        if targets is None or target not in targets:
            return False
        del targets[target]
        del self._in[target][edge_type][source]
        self._degree[source] -= 1
        self._degree[target] -= 1
        self._spread.pop(source, None)
        self._spread.pop(target, None)
        if edge_type != NODE:
            self._components.stale += 1
        self._edges -= 1
        self.version += 1
        return True

    def has_edge(self, source: Key, target: Key, edge_type: EdgeType) -> bool:
        return target in self._out.get(source, {}).get(edge_type, {})

    def edges_of(self, key: Key) -> Iterator[EdgeKey]:
        """Every edge touching ``key``: outgoing first, then incoming."""
        for edge_type, targets in self._out.get(key, {}).items():
            for target in targets:
                yield (key, target, edge_type)
        for edge_type, sources in self._in.get(key, {}).items():
            for source in sources:
                yield (source, key, edge_type)

    def degree(self, key: Key) -> int:
        """Edges touching ``key``, of every type and direction."""
        return self._degree.get(key, 0)

    # ---- components (see corrmesh.topology.components) -------------------

    def components(self) -> dict[Key, Key]:
        """The union-find's parent links (a key absent is its own root), rebuilt
        first when removals piled up; for batched ``linked`` checks, read only."""
        if self._components.stale > max(1000, self._edges // 4):
            self._components = Components()
            for source, by_type in self._out.items():
                for edge_type, targets in by_type.items():
                    if edge_type != NODE:
                        for target in targets:
                            self._components.union(source, target)
        return self._components.links

    def find(self, key: Key) -> Key:
        """The root of ``key``'s set in :meth:`components`."""
        return self._components.find(key)

    def linked(self, a: Key, b: Key) -> bool:
        """False when no path of non-NODE edges can join ``a`` and ``b``;
        True when one may (a search then decides)."""
        self.components()
        return self._components.find(a) == self._components.find(b)

    def edge_count(self) -> int:
        return self._edges

    def adjacency(self) -> tuple[Adjacency, Adjacency]:
        """(outgoing, incoming) maps, for traversals on the hot path; read only."""
        return self._out, self._in

    def spread(self, key: Key) -> tuple[Key, ...]:
        """Resources one edge away that a failure of ``key`` reaches, edge types
        in PROPAGATES_FORWARD's order, outgoing ones first."""
        found = self._spread.get(key)
        if found is None:
            reached: list[Key] = []
            for adjacency, edge_types in ((self._out, _FORWARD), (self._in, _BACKWARD)):
                by_type = adjacency.get(key)
                if by_type:
                    for edge_type in edge_types:
                        neighbours = by_type.get(edge_type)
                        if neighbours:
                            reached.extend(neighbours)
            found = self._spread[key] = tuple(reached)
        return found

    def view(self, key: Key) -> RefView:
        """(ResourceRef of ``key`` serialised with its length prefix, kind, name),
        kept until the resource changes: responses listing many resources are
        assembled from these bytes."""
        found = self._views.get(key)
        if found is None:
            ref = self.resources[key].ref
            data = ref.SerializeToString()
            found = self._views[key] = (varint(len(data)) + data, ref.kind, ref.name)
        return found

    def outgoing(self, key: Key, edge_type: EdgeType) -> Collection[Key]:
        return self._out.get(key, {}).get(edge_type, {}).keys()

    def incoming(self, key: Key, edge_type: EdgeType) -> Collection[Key]:
        return self._in.get(key, {}).get(edge_type, {}).keys()

    def adjacent(self, key: Key, edge_types: Iterable[EdgeType]) -> list[Key]:
        """Resources one edge of ``edge_types`` away, either way (may repeat)."""
        found: list[Key] = []
        out = self._out.get(key)
        inc = self._in.get(key)
        for edge_type in edge_types:
            if out is not None and edge_type in out:
                found.extend(out[edge_type])
            if inc is not None and edge_type in inc:
                found.extend(inc[edge_type])
        return found
