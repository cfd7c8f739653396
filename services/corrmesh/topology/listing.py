"""ListResources: filtering by cluster/kind/namespace/labels, paged in a stable order.

Resources are listed in (cluster, kind, namespace, name, uid) order; a page
token holds the last of those keys served, so a page stays correct while the
graph changes between calls (nothing is skipped or repeated that existed
throughout).
"""

from __future__ import annotations

from corrmesh.runtime.errors import FieldViolations
from corrmesh.runtime.paging import (
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    page_size,
)
from corrmesh.topology.graph import TopologyGraph
from corrmesh.topology.selectors import SelectorError, parse_selector
from corrmesh.v1 import topology_pb2

SortKey = tuple[str, str, str, str, str]


def _sort_key(resource: topology_pb2.Resource) -> SortKey:
    ref = resource.ref
    return (ref.cluster, ref.kind, ref.namespace, ref.name, ref.uid)


def list_resources(
    graph: TopologyGraph,
    request: topology_pb2.ListResourcesRequest,
    violations: FieldViolations,
) -> topology_pb2.ListResourcesResponse:
    """One page of matching resources; problems with the request go to ``violations``."""
    size = page_size(request.page_size, violations)
    try:
        selector = parse_selector(request.label_selector)
    except SelectorError as exc:
        violations.add("label_selector", str(exc))
    fingerprint = filter_fingerprint(
        request.cluster, request.kind, request.namespace, request.label_selector
    )
    position = decode_page_token(request.page_token, fingerprint, violations)
    after: SortKey | None = None
    if position is not None:
        if not (
            isinstance(position, list)
            and len(position) == 5
            and all(isinstance(part, str) for part in position)
        ):
            violations.add("page_token", "not a token this service issued")
        else:
            after = (position[0], position[1], position[2], position[3], position[4])
    if violations:
        return topology_pb2.ListResourcesResponse()
    matching = []
    for resource in graph.resources.values():
        ref = resource.ref
        if request.cluster and ref.cluster != request.cluster:
            continue
        if request.kind and ref.kind != request.kind:
            continue
        if request.namespace and ref.namespace != request.namespace:
            continue
        if not selector.matches(resource.labels):
            continue
        key = _sort_key(resource)
        if after is not None and key <= after:
            continue
        matching.append((key, resource))
    matching.sort(key=lambda item: item[0])
    page = matching[:size]
    next_token = ""
    if len(matching) > size:
        next_token = encode_page_token(list(page[-1][0]), fingerprint)
    return topology_pb2.ListResourcesResponse(
        resources=[resource for _key, resource in page], next_page_token=next_token
    )
