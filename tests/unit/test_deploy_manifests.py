"""The Kubernetes manifests and the Dockerfile agree with the code.

Every port, probe, peer address and database variable in deploy/ is checked
against corrmesh.runtime.settings (the defaults the servers really use, and the
way they really read their environment), so moving a default port or renaming
a setting without touching deploy/ fails here.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from corrmesh.runtime.settings import (
    DEFAULT_GRPC_PORTS,
    INGEST_DICOM_PORT,
    INGEST_WEBHOOK_PORT,
    SERVICES,
    SPANNER_DICOM_PORT,
    SPANNER_DICOMWEB_PORT,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kustomize" / "base"

#: Every listener of each service, by port name (DESIGN.md, "Runtime conventions").
EXPECTED_PORTS: dict[str, dict[str, int]] = {
    "ingest": {
        "grpc": DEFAULT_GRPC_PORTS["ingest"],
        "dicom": INGEST_DICOM_PORT,
        "webhook": INGEST_WEBHOOK_PORT,
    },
    "correlation": {"grpc": DEFAULT_GRPC_PORTS["correlation"]},
    "topology": {"grpc": DEFAULT_GRPC_PORTS["topology"]},
    "spanner": {
        "grpc": DEFAULT_GRPC_PORTS["spanner"],
        "dicom": SPANNER_DICOM_PORT,
        "dicomweb": SPANNER_DICOMWEB_PORT,
    },
}

#: Who calls whom (DESIGN.md, "The four services").
PEERS: dict[str, set[str]] = {
    "ingest": set(),
    "correlation": {"ingest", "topology"},
    "topology": {"ingest"},
    "spanner": {"ingest"},
}

#: What Topology may read, as (apiGroup, resource); verbs get/list/watch only.
EXPECTED_RBAC: set[tuple[str, str]] = {
    ("", "pods"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "services"),
    ("", "endpoints"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "nodes"),
    ("", "persistentvolumeclaims"),
    ("", "events"),
}
READ_VERBS = {"get", "list", "watch"}


def k8s_name(service: str) -> str:
    return f"corrmesh-{service}"


# --------------------------------------------------------------------------- loading


def _kustomization() -> dict[str, Any]:
    data = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _load_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for resource in _kustomization()["resources"]:
        path = BASE / resource
        assert path.is_file(), f"kustomization.yaml lists {resource}, which does not exist"
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects.append(doc)
    return objects


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return _load_objects()


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name}, found {len(found)}"
    return found[0]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def _container(deployment: dict[str, Any], service: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    matching = [c for c in containers if c["name"] == service]
    assert len(matching) == 1, f"{deployment['metadata']['name']}: no container named {service}"
    return matching[0]


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def _services_by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in _of_kind(objects, "Service")}


# --------------------------------------------------------------------------- inventory


def test_one_deployment_and_service_per_service(objects: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"] for d in _of_kind(objects, "Deployment")}
    services = {s["metadata"]["name"] for s in _of_kind(objects, "Service")}
    expected = {k8s_name(s) for s in SERVICES}
    assert deployments == expected
    assert services == expected


@pytest.mark.parametrize("service", SERVICES)
def test_container_runs_its_service(objects: list[dict[str, Any]], service: str) -> None:
    deployment = _find(objects, "Deployment", k8s_name(service))
    container = _container(deployment, service)
    # The image's ENTRYPOINT is "corrmesh" (checked below): args pick the service.
    assert container.get("args") == ["serve", service]
    assert "command" not in container, "command would bypass the image's entrypoint"


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize("service", SERVICES)
def test_container_ports_are_the_code_defaults(objects: list[dict[str, Any]], service: str) -> None:
    container = _container(_find(objects, "Deployment", k8s_name(service)), service)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == EXPECTED_PORTS[service]
    assert all(p.get("protocol", "TCP") == "TCP" for p in container["ports"])
    # The server listens where the manifest says: no env var moves it elsewhere.
    settings = load_settings(service, argv=[], env=_plain_env(container))
    assert settings.port == ports["grpc"]
    assert settings.host in {"0.0.0.0", "::"}, "a pod must listen on all interfaces"


@pytest.mark.parametrize("service", SERVICES)
def test_service_targets_the_right_ports(objects: list[dict[str, Any]], service: str) -> None:
    deployment = _find(objects, "Deployment", k8s_name(service))
    container = _container(deployment, service)
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc = _find(objects, "Service", k8s_name(service))

    selector = svc["spec"]["selector"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector, "a Service without a selector reaches no pod"
    assert selector.items() <= pod_labels.items(), "Service selector misses the pods"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    ports = svc["spec"]["ports"]
    assert {p["name"]: p["port"] for p in ports} == EXPECTED_PORTS[service]
    for port in ports:
        target = port.get("targetPort", port["port"])
        resolved = by_name.get(target) if isinstance(target, str) else target
        assert resolved == EXPECTED_PORTS[service][port["name"]], (
            f"Service {k8s_name(service)} port {port['name']} targets {target!r}, "
            f"which is not container port {EXPECTED_PORTS[service][port['name']]}"
        )


def test_no_other_deployment_selected_by_a_service(objects: list[dict[str, Any]]) -> None:
    for svc in _of_kind(objects, "Service"):
        selector = svc["spec"]["selector"]
        selected = [
            d["metadata"]["name"]
            for d in _of_kind(objects, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [svc["metadata"]["name"]], (
            f"{svc['metadata']['name']} selects {selected}"
        )


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("service", SERVICES)
def test_grpc_readiness_and_liveness_probes(objects: list[dict[str, Any]], service: str) -> None:
    container = _container(_find(objects, "Deployment", k8s_name(service)), service)
    grpc_port = DEFAULT_GRPC_PORTS[service]
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(kind)
        if kind == "startupProbe" and probe is None:
            continue
        assert probe is not None, f"{service}: no {kind}"
        assert set(probe) & {"httpGet", "tcpSocket", "exec"} == set(), (
            f"{service}: {kind} must be a native gRPC probe"
        )
        assert probe.get("grpc", {}).get("port") == grpc_port, (
            f"{service}: {kind} checks {probe.get('grpc')}, not gRPC port {grpc_port}"
        )
        # Overall server health (""), which every server reports.
        assert probe["grpc"].get("service", "") == ""
        period = probe.get("periodSeconds", 10)
        failures = probe.get("failureThreshold", 3)
        timeout = probe.get("timeoutSeconds", 1)
        assert 1 <= period <= 60, f"{service}: {kind} periodSeconds {period}"
        assert 1 <= failures <= (120 if kind == "startupProbe" else 10), (
            f"{service}: {kind} failureThreshold {failures}"
        )
        assert 1 <= timeout <= period, f"{service}: {kind} timeoutSeconds {timeout}"
    liveness = container["livenessProbe"]
    # A restart needs at least ~20 s of failures, so a slow moment does not kill the pod.
    assert liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) >= 20
    if "startupProbe" not in container:
        assert liveness.get("initialDelaySeconds", 0) >= 5


# --------------------------------------------------------------------------- resources

_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _cpu(quantity: object) -> float:
    match = _CPU.match(str(quantity))
    assert match, f"bad CPU quantity {quantity!r}"
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


def _memory(quantity: object) -> float:
    match = _MEMORY.match(str(quantity))
    assert match, f"bad memory quantity {quantity!r}"
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


@pytest.mark.parametrize("service", SERVICES)
def test_resource_requests_and_limits(objects: list[dict[str, Any]], service: str) -> None:
    container = _container(_find(objects, "Deployment", k8s_name(service)), service)
    resources = container.get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    assert {"cpu", "memory"} <= requests.keys(), f"{service}: requests {requests}"
    assert "memory" in limits, f"{service}: no memory limit"
    assert _cpu(requests["cpu"]) > 0
    assert 64 * 2**20 <= _memory(requests["memory"]) <= _memory(limits["memory"])
    if "cpu" in limits:
        assert _cpu(requests["cpu"]) <= _cpu(limits["cpu"])


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize("service", SERVICES)
def test_peer_addresses_match_services(objects: list[dict[str, Any]], service: str) -> None:
    container = _container(_find(objects, "Deployment", k8s_name(service)), service)
    env = _plain_env(container)
    services = _services_by_name(objects)

    address_vars = {k: v for k, v in env.items() if k.endswith("_ADDRESS")}
    for name, value in address_vars.items():
        host, _, port = value.rpartition(":")
        svc_name = host.split(".")[0]
        assert svc_name in services, f"{service}: {name}={value} names no Service"
        grpc_ports = [p["port"] for p in services[svc_name]["spec"]["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [int(port)], f"{service}: {name}={value}, Service has {grpc_ports}"

    # What the server really reads from that environment.
    settings = load_settings(service, argv=[], env=env)
    for peer in PEERS[service]:
        expected = f"{k8s_name(peer)}:{DEFAULT_GRPC_PORTS[peer]}"
        actual = settings.peer_address(peer)
        host, _, port = actual.rpartition(":")
        # A short Service name or its cluster DNS name (corrmesh-ingest.corrmesh.svc...).
        assert host.split(".")[0] == k8s_name(peer) and port == str(DEFAULT_GRPC_PORTS[peer]), (
            f"{service} would call {peer} at {actual}, expected {expected}"
        )


def _secret_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


@pytest.mark.parametrize("service", SERVICES)
def test_database_url_comes_from_an_optional_secret(
    objects: list[dict[str, Any]], service: str
) -> None:
    container = _container(_find(objects, "Deployment", k8s_name(service)), service)
    variable = f"CORRMESH_{service.upper()}_DATABASE_URL"
    secrets = _secret_env(container)
    assert variable in secrets, f"{service}: {variable} is not taken from a Secret"
    ref = secrets[variable]
    assert ref.get("optional") is True, "without the Secret the service must still start (SQLite)"
    assert ref.get("name") and ref.get("key")
    assert variable not in _plain_env(container), "a database URL must not be inlined"
    # The variable is the one this service reads (not another service's).
    url = "postgresql+psycopg://corrmesh@db/corrmesh"
    settings = load_settings(service, argv=[], env={**_plain_env(container), variable: url})
    assert settings.database_url == url


@pytest.mark.parametrize("service", SERVICES)
def test_var_dir_is_a_writable_volume(objects: list[dict[str, Any]], service: str) -> None:
    deployment = _find(objects, "Deployment", k8s_name(service))
    container = _container(deployment, service)
    settings = load_settings(service, argv=[], env=_plain_env(container))
    var_dir = str(settings.var_dir)
    assert var_dir.startswith("/"), f"{service}: var_dir {var_dir} is relative to the workdir"
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert var_dir in mounts, f"{service}: nothing mounted at var_dir {var_dir}"
    volumes = {v["name"] for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    assert mounts[var_dir] in volumes


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_non_root(objects: list[dict[str, Any]], service: str) -> None:
    pod = _find(objects, "Deployment", k8s_name(service))["spec"]["template"]["spec"]
    container = _container({"spec": {"template": {"spec": pod}}}, service)
    merged = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert merged.get("runAsNonRoot") is True
    assert merged.get("runAsUser", 1) != 0
    assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False
    assert "ALL" in container.get("securityContext", {}).get("capabilities", {}).get("drop", [])


def test_only_topology_gets_an_api_token(objects: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        pod = _find(objects, "Deployment", k8s_name(service))["spec"]["template"]["spec"]
        if service == "topology":
            assert pod.get("serviceAccountName") == k8s_name("topology")
            assert pod.get("automountServiceAccountToken", True) is True
        else:
            assert pod.get("serviceAccountName", "default") == "default"
            assert pod.get("automountServiceAccountToken") is False


def test_cluster_role_is_read_only_and_exact(objects: list[dict[str, Any]]) -> None:
    roles = _of_kind(objects, "ClusterRole")
    assert [r["metadata"]["name"] for r in roles] == [k8s_name("topology")]
    assert _of_kind(objects, "Role") == [], "no namespaced Role is expected"
    covered: set[tuple[str, str]] = set()
    for rule in roles[0]["rules"]:
        assert set(rule["verbs"]) == READ_VERBS, f"verbs must be get/list/watch only: {rule}"
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
        for group in rule["apiGroups"]:
            assert group != "*", rule
            for resource in rule["resources"]:
                assert "*" not in resource and "/" not in resource, (
                    f"no wildcards or subresources: {resource}"
                )
                pair = (group, resource)
                assert pair not in covered, f"{pair} granted twice"
                covered.add(pair)
    assert covered == EXPECTED_RBAC, (
        f"missing {sorted(EXPECTED_RBAC - covered)}, extra {sorted(covered - EXPECTED_RBAC)}"
    )


def test_cluster_role_binding_binds_the_topology_account(objects: list[dict[str, Any]]) -> None:
    account = _find(objects, "ServiceAccount", k8s_name("topology"))
    binding = _find(objects, "ClusterRoleBinding", k8s_name("topology"))
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": k8s_name("topology"),
    }
    namespace = _kustomization().get("namespace", account["metadata"].get("namespace", "default"))
    subjects = binding["subjects"]
    assert len(subjects) == 1
    assert subjects[0]["kind"] == "ServiceAccount"
    assert subjects[0]["name"] == account["metadata"]["name"]
    # kustomize rewrites a "default" subject namespace to the kustomization's.
    assert subjects[0].get("namespace") in {"default", namespace}


# --------------------------------------------------------------------------- rendering


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def test_kustomize_renders_the_same_objects(objects: list[dict[str, Any]]) -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is on PATH")
    proc = subprocess.run(
        [*command, str(BASE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, objects))
    namespace = _kustomization()["namespace"]
    account = _find(rendered, "ServiceAccount", k8s_name("topology"))
    binding = _find(rendered, "ClusterRoleBinding", k8s_name("topology"))
    assert account["metadata"]["namespace"] == namespace
    assert binding["subjects"][0]["namespace"] == namespace
    for deployment in _of_kind(rendered, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["image"].split(":")[0].rsplit("/", 1)[-1] == "corrmesh"
            assert ":" in container["image"], "the image needs a tag"


# --------------------------------------------------------------------------- schema

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "datetime": (str,),
    "date": (str,),
    "bytes": (str, bytes),
}


def _schema_errors(value: Any, type_name: str, path: str) -> Iterator[str]:
    models = importlib.import_module("kubernetes.client.models")

    # The client spells containers "List[X]"/"Dict[str, X]" (older: "list[X]"/"dict(str, X)").
    if type_name.lower().startswith("list["):
        if not isinstance(value, list):
            yield f"{path}: expected a list"
            return
        for i, item in enumerate(value):
            yield from _schema_errors(item, type_name[5:-1], f"{path}[{i}]")
    elif type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name[5:-1].split(",", 1)[1].strip()
        if not isinstance(value, Mapping):
            yield f"{path}: expected a mapping"
            return
        for k, item in value.items():
            yield from _schema_errors(item, inner, f"{path}.{k}")
    elif type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name])
        if type_name in {"int", "float"} and isinstance(value, bool):
            ok = False
        if not ok:
            yield f"{path}: {value!r} is not {type_name}"
    else:
        model = getattr(models, type_name)
        if not isinstance(value, Mapping):
            yield f"{path}: expected a {type_name} mapping"
            return
        by_json = {json: attr for attr, json in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                yield f"{path}.{key}: unknown field of {type_name}"
                continue
            yield from _schema_errors(item, model.openapi_types[by_json[key]], f"{path}.{key}")


def test_manifests_match_the_kubernetes_schema(objects: list[dict[str, Any]]) -> None:
    """Unknown or mistyped fields (a misspelt probe key, say) are caught here."""
    pytest.importorskip("kubernetes")
    errors: list[str] = []
    for obj in objects:
        group_version = obj["apiVersion"]
        version = group_version.rsplit("/", 1)[-1]
        assert version == "v1", f"{obj['kind']}: unexpected apiVersion {group_version}"
        model = f"V1{obj['kind']}"
        errors.extend(_schema_errors(obj, model, f"{obj['kind']}/{obj['metadata']['name']}"))
    assert errors == []


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), "ENTRYPOINT/CMD must use the exec (JSON) form"
    return [str(v) for v in value]


def test_dockerfile() -> None:
    instructions = _dockerfile()
    args: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args.setdefault(name, default)
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert stages, "no FROM"
    for index in stages:
        image = instructions[index][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image == "python:3.11-slim" or image.split()[0] in {
            instructions[s][1].split()[-1] for s in stages if s < index
        }, f"stage built from {image}"

    final = instructions[stages[-1] :]
    assert any(
        w == "RUN" and re.search(r"pip install (\S+ )*\.(\s|$)", r) for w, r in instructions
    ), "the package is installed with `pip install .`"
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}

    entrypoint = [_exec_form(r) for w, r in final if w == "ENTRYPOINT"]
    cmd = [_exec_form(r) for w, r in final if w == "CMD"]
    assert entrypoint and cmd
    assert entrypoint[-1] + cmd[-1] == ["corrmesh", "serve", "ingest"]

    exposed = {
        int(port.split("/")[0]) for w, r in final if w == "EXPOSE" for port in shlex.split(r)
    }
    wanted = {port for ports in EXPECTED_PORTS.values() for port in ports.values()}
    assert exposed == wanted


def test_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    """pyproject.toml builds the wheel from gen/python and services."""
    copied = " ".join(r for w, r in _dockerfile() if w == "COPY" and "--from" not in r)
    for needed in ("pyproject.toml", "README.md", "gen/python", "services"):
        assert needed in copied, f"the build stage does not copy {needed}"
        assert (REPO / needed).exists()
