"""A realistic estate for Topology's Kubernetes tiers, and a client to build it.

The estate (namespace ``shop``), as controllers would have made it (a bare
API server runs no controllers, so ReplicaSets, Pods and EndpointSlices are
created here with their ownerReferences):

- Nodes worker-1, worker-2, worker-3, all Ready.
- Deployments payment, order (2 replicas each: one Pod on worker-1, one on
  worker-2) and web (one Pod on worker-3), each through a ReplicaSet.
- StatefulSet mysql with Pod mysql-0 on worker-1 mounting PVC data-mysql-0.
- DaemonSet node-exporter with a Pod on every node.
- CronJob report -> Job report-1 -> Pod report-1-x on worker-3.
- Services payment-svc, order-svc, web, mysql selecting their Pods, each with
  an EndpointSlice listing them.
- ConfigMap payment-config (volume of payment Pods), shared-config (envFrom of
  order Pods); Secret db-credentials (env secretKeyRef of payment and order
  Pods, data that Topology must never receive).
- Events: BackOff (Warning, count 3) on a payment Pod.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as kube_client

from corrmesh.topology.kube.client import ClusterClient, KubeApiError
from corrmesh.topology.kube.discovery import discover
from corrmesh.topology.kube.kinds import KINDS, ServedKind

NAMESPACE = "shop"
NODES = ("worker-1", "worker-2", "worker-3")
SECRET_VALUE = "c2VjcmV0LXBhc3N3b3Jk"  # base64 of a password Topology must never see
#: Deployment -> (Pods' nodes, app label)
DEPLOYMENTS = {
    "payment": ("worker-1", "worker-2"),
    "order": ("worker-1", "worker-2"),
    "web": ("worker-3",),
}


def write_kubeconfig(
    path: Path, server: str, token: str, ca_file: str = "", name: str = "test"
) -> Path:
    """A kubeconfig with one cluster, user and (current) context."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file:
        cluster["certificate-authority"] = ca_file
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class KubeAdmin:
    """Writes objects through the official client's ApiClient, as JSON."""

    def __init__(self, kubeconfig: Path) -> None:
        self.cluster = ClusterClient.from_kubeconfig(str(kubeconfig))
        self.api: kube_client.ApiClient = self.cluster.api_client
        self.served: dict[str, ServedKind] = discover(self.cluster, KINDS).served

    def close(self) -> None:
        self.cluster.close()

    def path(self, kind: str, namespace: str = "", name: str = "") -> str:
        """The REST path of ``kind`` (in ``namespace``; of object ``name``)."""
        served = self.served[kind] if kind != "Namespace" else None
        if served is None:
            base, resource, namespaced = "/api/v1", "namespaces", False
        else:
            group = served.spec.group
            base = f"/apis/{group}/{served.version}" if group else f"/api/{served.version}"
            resource, namespaced = served.spec.resource, served.spec.namespaced
        path = base
        if namespaced:
            path += f"/namespaces/{namespace or NAMESPACE}"
        path += f"/{resource}"
        return f"{path}/{name}" if name else path

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params, _request_timeout=(5, 30))
        data = response.read()
        if response.status >= 400:
            document = json.loads(data) if data else {}
            raise KubeApiError(
                response.status, str(document.get("reason", "")), str(document.get("message", ""))
            )
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body.get("metadata", {}).get("namespace", "")
        body.setdefault(
            "apiVersion", self.served[kind].api_version if kind in self.served else "v1"
        )
        body.setdefault("kind", kind)
        return self.request("POST", self.path(kind, namespace), body)

    def patch(
        self, kind: str, name: str, patch: dict[str, Any], namespace: str = "", status: bool = False
    ) -> dict[str, Any]:
        path = self.path(kind, namespace, name) + ("/status" if status else "")
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
        self.request("DELETE", self.path(kind, namespace, name), body)


def _meta(name: str, namespace: str = NAMESPACE, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def owner(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """ownerReferences naming ``obj`` as controller."""
    return [
        {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def node_body(name: str, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": _meta(name, "", labels={"kubernetes.io/hostname": name}),
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
                    "lastHeartbeatTime": "2026-11-01T12:00:00Z",
                    "lastTransitionTime": "2026-11-01T12:00:00Z",
                }
            ]
        },
    }


def pod_body(
    name: str, node: str, labels: dict[str, str], owners: list[dict[str, Any]], app: str
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": app, "image": f"registry.example/{app}:1.0"}
    volumes: list[dict[str, Any]] = []
    if app == "payment":
        volumes.append({"name": "config", "configMap": {"name": "payment-config"}})
        container["volumeMounts"] = [{"name": "config", "mountPath": "/etc/payment"}]
    if app == "order":
        container["envFrom"] = [{"configMapRef": {"name": "shared-config"}}]
    if app in ("payment", "order"):
        container["env"] = [
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
            }
        ]
    if app == "mysql":
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": "data-mysql-0"}})
        container["volumeMounts"] = [{"name": "data", "mountPath": "/var/lib/mysql"}]
    spec: dict[str, Any] = {"nodeName": node, "containers": [container]}
    if volumes:
        spec["volumes"] = volumes
    return {
        "metadata": _meta(name, labels=labels, ownerReferences=owners),
        "spec": spec,
    }


def ready_status() -> dict[str, Any]:
    return {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }


def workload_body(kind: str, name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1.0"}]},
    }
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"metadata": _meta(name, labels=labels), "spec": spec}


def slice_body(
    admin: KubeAdmin, service: dict[str, Any], pods: list[dict[str, Any]]
) -> dict[str, Any]:
    name = service["metadata"]["name"]
    return {
        "apiVersion": admin.served["EndpointSlice"].api_version,
        "kind": "EndpointSlice",
        "metadata": _meta(
            f"{name}-abcde",
            labels={"kubernetes.io/service-name": name},
            ownerReferences=owner(service),
        ),
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.0.0.{index + 10}"],
                "conditions": {"ready": True},
                "targetRef": {
                    "kind": "Pod",
                    "namespace": NAMESPACE,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            for index, pod in enumerate(pods)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def make_pod(
    admin: KubeAdmin, name: str, node: str, app: str, owner_obj: dict[str, Any]
) -> dict[str, Any]:
    """Creates a Running, Ready Pod owned by ``owner_obj``."""
    admin.create("Pod", pod_body(name, node, {"app": app}, owner(owner_obj), app))
    return admin.patch("Pod", name, ready_status(), NAMESPACE, status=True)


def build_estate(admin: KubeAdmin) -> dict[str, dict[str, Any]]:
    """Creates the estate the module docstring describes; returns objects by "Kind/name"."""
    made: dict[str, dict[str, Any]] = {}

    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        made[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
        return obj

    admin.create("Namespace", {"metadata": _meta(NAMESPACE, "")})
    for node in NODES:
        keep(admin.create("Node", node_body(node)))
    keep(admin.create("ConfigMap", {"metadata": _meta("payment-config"), "data": {"a": "1"}}))
    keep(admin.create("ConfigMap", {"metadata": _meta("shared-config"), "data": {"b": "2"}}))
    keep(
        admin.create(
            "Secret",
            {"metadata": _meta("db-credentials"), "data": {"password": SECRET_VALUE}},
        )
    )
    keep(
        admin.create(
            "PersistentVolumeClaim",
            {
                "metadata": _meta("data-mysql-0"),
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
    )
    pods_by_app: dict[str, list[dict[str, Any]]] = {}
    for app, nodes in DEPLOYMENTS.items():
        deployment = keep(
            admin.create("Deployment", workload_body("Deployment", app, len(nodes), {"app": app}))
        )
        rs_body = workload_body("ReplicaSet", f"{app}-5d9c7", len(nodes), {"app": app})
        rs_body["metadata"]["ownerReferences"] = owner(deployment)
        replica_set = keep(admin.create("ReplicaSet", rs_body))
        for index, node in enumerate(nodes):
            pod = keep(make_pod(admin, f"{app}-5d9c7-{index}", node, app, replica_set))
            pods_by_app.setdefault(app, []).append(pod)
    mysql = keep(
        admin.create("StatefulSet", workload_body("StatefulSet", "mysql", 1, {"app": "mysql"}))
    )
    pods_by_app["mysql"] = [keep(make_pod(admin, "mysql-0", "worker-1", "mysql", mysql))]
    exporter = keep(
        admin.create(
            "DaemonSet", workload_body("DaemonSet", "node-exporter", 0, {"app": "node-exporter"})
        )
    )
    for node in NODES:
        keep(make_pod(admin, f"node-exporter-{node}", node, "node-exporter", exporter))
    cron = keep(
        admin.create(
            "CronJob",
            {
                "metadata": _meta("report"),
                "spec": {
                    "schedule": "0 * * * *",
                    "jobTemplate": {"spec": {"template": _job_template()}},
                },
            },
        )
    )
    job = keep(
        admin.create(
            "Job",
            {
                "metadata": _meta("report-1", ownerReferences=owner(cron)),
                "spec": {"template": _job_template()},
            },
        )
    )
    keep(make_pod(admin, "report-1-x7k2p", "worker-3", "report", job))
    for app in ("payment", "order", "web", "mysql"):
        name = f"{app}-svc" if app in ("payment", "order") else app
        service = keep(
            admin.create(
                "Service",
                {
                    "metadata": _meta(name),
                    "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
                },
            )
        )
        keep(admin.create("EndpointSlice", slice_body(admin, service, pods_by_app[app])))
    payment_pod = pods_by_app["payment"][0]
    keep(admin.create("Event", event_body("payment-backoff", payment_pod, "BackOff", 3)))
    return made


def _job_template() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "report"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "report", "image": "registry.example/report:1.0"}],
        },
    }


def event_body(name: str, about: dict[str, Any], reason: str, count: int) -> dict[str, Any]:
    """A core/v1 Event about ``about`` (a Warning), as the kubelet writes them."""
    return {
        "metadata": _meta(name, about["metadata"].get("namespace", "default")),
        "involvedObject": {
            "apiVersion": about["apiVersion"],
            "kind": about["kind"],
            "namespace": about["metadata"].get("namespace", ""),
            "name": about["metadata"]["name"],
            "uid": about["metadata"]["uid"],
        },
        "reason": reason,
        "message": "Back-off restarting failed container",
        "type": "Warning",
        "count": count,
        "firstTimestamp": "2026-11-01T11:58:00Z",
        "lastTimestamp": "2026-11-01T12:00:00Z",
        "source": {"component": "kubelet", "host": about.get("spec", {}).get("nodeName", "")},
    }
