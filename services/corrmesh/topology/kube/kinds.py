"""The kinds Topology lists and watches, and where each may be served.

Versions are in order of preference; discovery picks the first one the
cluster serves (a 1.20 server has EndpointSlice only as
``discovery.k8s.io/v1beta1`` and CronJob only as ``batch/v1beta1``).
Core ``Endpoints`` is watched only where no EndpointSlice version is served,
so a Service's endpoints are never counted twice. Secrets are read as
``PartialObjectMetadata``: Topology never receives secret data.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Accept headers asking for metadata only (meta.k8s.io/v1).
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


@dataclass(frozen=True)
class KindSpec:
    """One kind Topology syncs."""

    kind: str
    group: str
    versions: tuple[str, ...]
    #: The plural resource name in the REST path ("pods").
    resource: str
    namespaced: bool = True
    #: Read as PartialObjectMetadata (never the object's data).
    metadata_only: bool = False
    #: Synced only when the cluster serves none of these kinds.
    only_without: tuple[str, ...] = ()
    #: Published to Ingest instead of becoming graph resources.
    events: bool = False


KINDS: tuple[KindSpec, ...] = (
    KindSpec("Node", "", ("v1",), "nodes", namespaced=False),
    KindSpec("Pod", "", ("v1",), "pods"),
    KindSpec("ReplicaSet", "apps", ("v1",), "replicasets"),
    KindSpec("Deployment", "apps", ("v1",), "deployments"),
    KindSpec("StatefulSet", "apps", ("v1",), "statefulsets"),
    KindSpec("DaemonSet", "apps", ("v1",), "daemonsets"),
    KindSpec("Job", "batch", ("v1",), "jobs"),
    KindSpec("CronJob", "batch", ("v1", "v1beta1"), "cronjobs"),
    KindSpec("Service", "", ("v1",), "services"),
    KindSpec("EndpointSlice", "discovery.k8s.io", ("v1", "v1beta1"), "endpointslices"),
    KindSpec("Endpoints", "", ("v1",), "endpoints", only_without=("EndpointSlice",)),
    KindSpec("ConfigMap", "", ("v1",), "configmaps"),
    KindSpec("Secret", "", ("v1",), "secrets", metadata_only=True),
    KindSpec("PersistentVolumeClaim", "", ("v1",), "persistentvolumeclaims"),
    KindSpec("Event", "", ("v1",), "events", events=True),
)

KIND_NAMES: frozenset[str] = frozenset(spec.kind for spec in KINDS)


@dataclass(frozen=True)
class ServedKind:
    """A kind at the version this cluster serves it."""

    spec: KindSpec
    version: str

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``group/version``."""
        return f"{self.spec.group}/{self.version}" if self.spec.group else self.version

    @property
    def path(self) -> str:
        """The cluster-wide collection path: ``/apis/apps/v1/deployments``."""
        prefix = f"/apis/{self.spec.group}" if self.spec.group else "/api"
        return f"{prefix}/{self.version}/{self.spec.resource}"

    @property
    def kind(self) -> str:
        return self.spec.kind
