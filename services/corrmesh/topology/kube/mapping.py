"""A Kubernetes object (JSON) as a graph resource and the references it makes.

An object's references become edges once both ends are in the graph (see
:mod:`corrmesh.topology.kube.linker`). Each reference names the other end by
uid (ownerReferences, endpoint targetRefs that carry one) or by
(cluster, kind, namespace, name) (a Pod's node, ConfigMaps, Secrets and
claims; an EndpointSlice's Service). Service selectors are not references:
they match Pods by labels, which :mod:`corrmesh.topology.kube.selection` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from corrmesh.topology.keys import Key, NameKey
from corrmesh.v1 import event_pb2, topology_pb2

OWNER = topology_pb2.EDGE_TYPE_OWNER
ENDPOINT = topology_pb2.EDGE_TYPE_ENDPOINT
CONFIG = topology_pb2.EDGE_TYPE_CONFIG
VOLUME = topology_pb2.EDGE_TYPE_VOLUME
NODE = topology_pb2.EDGE_TYPE_NODE
KUBERNETES = topology_pb2.RESOURCE_ORIGIN_KUBERNETES

#: The other end of a reference: a graph key ("uid", uid) or a NameKey.
Target = Key | NameKey
#: (edge type, True when this object is the edge's ``from`` end, the other end).
Reference = tuple[int, bool, Target]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class MalformedObjectError(ValueError):
    """The object lacks what every Kubernetes object has (metadata.name)."""


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    """``value`` when it is a JSON string, else an empty one."""
    return value if isinstance(value, str) else ""


def ref_of(cluster: str, kind: str, api_version: str, obj: dict[str, Any]) -> event_pb2.ResourceRef:
    """The ResourceRef of ``obj``; raises MalformedObjectError without a name."""
    metadata = as_dict(obj.get("metadata"))
    name = as_str(metadata.get("name"))
    if not name:
        raise MalformedObjectError(f"{kind} without metadata.name")
    return event_pb2.ResourceRef(
        cluster=cluster,
        kind=kind,
        namespace=as_str(metadata.get("namespace")),
        name=name,
        uid=as_str(metadata.get("uid")),
        api_version=api_version,
    )


def parse_timestamp(text: Any) -> timestamp_pb2.Timestamp | None:
    """An RFC 3339 time from the API as a Timestamp; None when absent or bad."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    """The labels of ``obj`` as strings."""
    labels = as_dict(as_dict(obj.get("metadata")).get("labels"))
    return {str(k): str(v) for k, v in labels.items()}


def to_resource(
    ref: event_pb2.ResourceRef,
    obj: dict[str, Any],
    now: timestamp_pb2.Timestamp,
    created: timestamp_pb2.Timestamp | None = None,
    labels: dict[str, str] | None = None,
) -> topology_pb2.Resource:
    """The graph resource for ``obj`` (named by ``ref``) with the facts worth
    showing as attributes; ``created`` and ``labels`` save work already done."""
    metadata = as_dict(obj.get("metadata"))
    if labels is None:
        labels = labels_of(obj)
    resource = topology_pb2.Resource(
        ref=ref,
        origin=KUBERNETES,
        labels=labels,
        attributes=attributes_of(ref.kind, obj),
        resource_version=as_str(metadata.get("resourceVersion")),
        updated_at=now,
    )
    if created is None:
        created = parse_timestamp(metadata.get("creationTimestamp"))
    if created is not None:
        resource.created_at.CopyFrom(created)
    return resource


def _condition(status: dict[str, Any], kind: str) -> str:
    for condition in _list(status.get("conditions")):
        if as_dict(condition).get("type") == kind:
            return as_str(condition.get("status"))
    return ""


def _put(attributes: dict[str, str], name: str, value: Any) -> None:
    if value is None or value == "":
        return
    attributes[name] = str(value).lower() if isinstance(value, bool) else str(value)


def attributes_of(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Kind-specific facts: node and phase of a Pod, readiness of a Node, replicas."""
    spec = as_dict(obj.get("spec"))
    status = as_dict(obj.get("status"))
    found: dict[str, str] = {}
    if kind == "Pod":
        _put(found, "node", spec.get("nodeName"))
        _put(found, "phase", status.get("phase"))
        _put(found, "ready", _condition(status, "Ready"))
        restarts = sum(
            int(as_dict(c).get("restartCount") or 0) for c in _list(status.get("containerStatuses"))
        )
        _put(found, "restarts", restarts)
    elif kind == "Node":
        _put(found, "ready", _condition(status, "Ready") or "Unknown")
        _put(found, "unschedulable", bool(spec.get("unschedulable")))
        pressure = [
            as_str(as_dict(c).get("type"))
            for c in _list(status.get("conditions"))
            if as_dict(c).get("type") != "Ready" and as_dict(c).get("status") == "True"
        ]
        _put(found, "conditions", ",".join(sorted(pressure)))
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        _put(found, "replicas", spec.get("replicas"))
        _put(found, "ready_replicas", status.get("readyReplicas") or 0)
        _put(found, "available_replicas", status.get("availableReplicas") or 0)
    elif kind == "DaemonSet":
        _put(found, "desired", status.get("desiredNumberScheduled"))
        _put(found, "ready", status.get("numberReady"))
    elif kind == "Job":
        for field in ("active", "succeeded", "failed"):
            _put(found, field, status.get(field))
    elif kind == "CronJob":
        _put(found, "schedule", spec.get("schedule"))
        _put(found, "suspend", spec.get("suspend"))
    elif kind == "Service":
        _put(found, "type", spec.get("type"))
        _put(found, "cluster_ip", spec.get("clusterIP"))
        selector = as_dict(spec.get("selector"))
        _put(found, "selector", ",".join(f"{k}={v}" for k, v in sorted(selector.items())))
    elif kind == "PersistentVolumeClaim":
        _put(found, "phase", status.get("phase"))
        _put(found, "volume", spec.get("volumeName"))
        _put(found, "storage_class", spec.get("storageClassName"))
    return found


def service_selector(obj: dict[str, Any]) -> dict[str, str]:
    """A Service's selector; empty (selects nothing) when it has none."""
    selector = as_dict(as_dict(obj.get("spec")).get("selector"))
    return {str(k): str(v) for k, v in selector.items()}


def references(cluster: str, kind: str, obj: dict[str, Any]) -> set[Reference]:
    """Every reference ``obj`` makes to another resource (no duplicates)."""
    metadata = as_dict(obj.get("metadata"))
    namespace = as_str(metadata.get("namespace"))
    found: set[Reference] = set()
    for owner in _list(metadata.get("ownerReferences")):
        uid = as_str(as_dict(owner).get("uid"))
        if uid:
            found.add((OWNER, False, ("uid", uid)))
    if kind == "Pod":
        found.update(_pod_references(cluster, namespace, obj))
    elif kind == "EndpointSlice":
        service = as_str(as_dict(metadata.get("labels")).get(SERVICE_NAME_LABEL))
        if service:
            found.add((ENDPOINT, False, (cluster, "Service", namespace, service)))
        targets = (as_dict(e).get("targetRef") for e in _list(obj.get("endpoints")))
        found.update(_endpoint_targets(cluster, namespace, targets))
    elif kind == "Endpoints":
        name = as_str(metadata.get("name"))
        found.add((ENDPOINT, False, (cluster, "Service", namespace, name)))
        found.update(_endpoint_targets(cluster, namespace, _endpoints_target_refs(obj)))
    return found


def _endpoints_target_refs(obj: dict[str, Any]) -> Iterator[Any]:
    for subset in _list(obj.get("subsets")):
        for field in ("addresses", "notReadyAddresses"):
            for address in _list(as_dict(subset).get(field)):
                yield as_dict(address).get("targetRef")


def _endpoint_targets(
    cluster: str, namespace: str, target_refs: Iterable[Any]
) -> Iterator[Reference]:
    for target in target_refs:
        target = as_dict(target)
        if target.get("kind") != "Pod":
            continue
        uid = as_str(target.get("uid"))
        if uid:
            yield (ENDPOINT, True, ("uid", uid))
        elif target.get("name"):
            pod_namespace = as_str(target.get("namespace")) or namespace
            yield (ENDPOINT, True, (cluster, "Pod", pod_namespace, as_str(target["name"])))


def _pod_references(cluster: str, namespace: str, obj: dict[str, Any]) -> set[Reference]:
    # On every Pod update (the busiest watch): dict lookups inline, not helpers.
    spec = as_dict(obj.get("spec"))
    found: set[Reference] = set()
    node = spec.get("nodeName")
    if node and isinstance(node, str):
        found.add((NODE, False, (cluster, "Node", "", node)))
    # (kind, name) of every ConfigMap and Secret the Pod uses; names checked once.
    used: list[tuple[str, Any]] = []
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, dict):
            continue
        if "configMap" in volume:
            used.append(("ConfigMap", as_dict(volume["configMap"]).get("name")))
        if "secret" in volume:
            used.append(("Secret", as_dict(volume["secret"]).get("secretName")))
        if "projected" in volume:
            for source in _list(as_dict(volume["projected"]).get("sources")):
                source = as_dict(source)
                used.append(("ConfigMap", as_dict(source.get("configMap")).get("name")))
                used.append(("Secret", as_dict(source.get("secret")).get("name")))
        if "persistentVolumeClaim" in volume:
            claim = as_str(as_dict(volume["persistentVolumeClaim"]).get("claimName"))
            if claim:
                found.add((VOLUME, False, (cluster, "PersistentVolumeClaim", namespace, claim)))
        if "ephemeral" in volume and volume.get("name"):
            # A generic ephemeral volume's claim is named <pod>-<volume>.
            pod_name = as_str(as_dict(obj.get("metadata")).get("name"))
            claim = f"{pod_name}-{volume['name']}"
            found.add((VOLUME, False, (cluster, "PersistentVolumeClaim", namespace, claim)))
    for secret in _list(spec.get("imagePullSecrets")):
        used.append(("Secret", as_dict(secret).get("name")))
    for field in CONTAINER_LISTS:
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        for container in containers:
            if not isinstance(container, dict):
                continue
            env = container.get("env")
            if isinstance(env, list):
                for variable in env:
                    source = variable.get("valueFrom") if isinstance(variable, dict) else None
                    if source and isinstance(source, dict):
                        if "configMapKeyRef" in source:
                            used.append(
                                ("ConfigMap", as_dict(source["configMapKeyRef"]).get("name"))
                            )
                        if "secretKeyRef" in source:
                            used.append(("Secret", as_dict(source["secretKeyRef"]).get("name")))
            env_from = container.get("envFrom")
            if isinstance(env_from, list):
                for origin in env_from:
                    origin = as_dict(origin)
                    used.append(("ConfigMap", as_dict(origin.get("configMapRef")).get("name")))
                    used.append(("Secret", as_dict(origin.get("secretRef")).get("name")))
    for kind, name in used:
        if name and isinstance(name, str):
            found.add((CONFIG, False, (cluster, kind, namespace, name)))
    return found
