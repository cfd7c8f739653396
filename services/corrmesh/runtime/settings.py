"""Settings every server shares, read from flags and ``CORRMESH_*`` variables.

A value is looked up in this order: the command-line flag, then
``CORRMESH_<SERVICE>_<NAME>``, then ``CORRMESH_<NAME>``, then the default. So
``CORRMESH_INGEST_PORT`` moves only Ingest, while ``CORRMESH_AUTH_TOKENS_FILE``
applies to every service started from the same environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

SERVICES = ("ingest", "correlation", "topology", "spanner")

#: Default gRPC port of each service; manifests, docs and tests agree on these.
DEFAULT_GRPC_PORTS: Mapping[str, int] = {
    "ingest": 50051,
    "correlation": 50052,
    "topology": 50053,
    "spanner": 50054,
}

#: Other listeners and their defaults (see DESIGN.md's runtime table).
INGEST_DICOM_PORT = 11113
INGEST_DICOM_AE_TITLE = "CORRMESH_IN"
INGEST_WEBHOOK_PORT = 8081
SPANNER_DICOM_PORT = 11112
SPANNER_DICOM_AE_TITLE = "CORRMESH"
SPANNER_DICOMWEB_PORT = 8080


def default_address(service: str) -> str:
    """Where a service listens on this machine by default."""
    return f"127.0.0.1:{DEFAULT_GRPC_PORTS[service]}"


@dataclass(frozen=True)
class Settings:
    """Everything a server needs to start; one instance per process."""

    service: str
    host: str = "0.0.0.0"
    port: int = 0
    var_dir: Path = Path("var")
    database_url: str = ""
    # Peers, as host:port.
    ingest_address: str = field(default_factory=lambda: default_address("ingest"))
    correlation_address: str = field(default_factory=lambda: default_address("correlation"))
    topology_address: str = field(default_factory=lambda: default_address("topology"))
    spanner_address: str = field(default_factory=lambda: default_address("spanner"))
    # TLS: a certificate and key turn TLS on; a client CA makes it mutual.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Client side of TLS, for calls to peers.
    tls_ca_file: str = ""
    # Bearer tokens: a file of "token scopes [subject]" lines turns auth on.
    auth_tokens_file: str = ""
    auth_disabled: bool = False
    # Token this process presents to its peers.
    client_token: str = ""
    # Topology: a YAML file of declared dependencies loaded at start.
    dependencies_file: str = ""
    # Correlation: a YAML file of recommended-action rules that come before
    # the built-in ones (corrmesh.correlation.analysis.actions).
    correlation_actions_file: str = ""
    # Topology: clusters to list+watch, "name=kubeconfig[#context]" or
    # "name=in-cluster", comma-separated; none when empty.
    kube_clusters: str = ""
    # Topology: WatchTopology's change log keeps at most this many changes and
    # none older than this many hours (0 turns a bound off); a client resuming
    # from a trimmed change gets OUT_OF_RANGE and relists.
    topology_changes_max_count: int = 1_000_000
    topology_changes_max_age_hours: float = 168.0
    log_level: str = "INFO"
    grace_seconds: float = 5.0
    # Ingest's edge listeners. A port of -1 is off (load_settings turns both on
    # at the DESIGN.md ports for Ingest), 0 takes any free port.
    ingest_dicom_port: int = -1
    ingest_dicom_ae_title: str = INGEST_DICOM_AE_TITLE
    # Comma-separated calling AE titles allowed to associate; empty allows any.
    ingest_dicom_allowed_aes: str = ""
    # Comma-separated storage SOP class UIDs or keywords to accept; empty: all.
    ingest_dicom_sop_classes: str = ""
    # TLS on the SCP with tls_cert_file/tls_key_file (mutual with tls_client_ca_file).
    ingest_dicom_tls: bool = False
    # Folder for received instances; empty: <var_dir>/dicom.
    ingest_dicom_store_dir: str = ""
    # A PACS that gets every stored instance by C-STORE: AE@host:port.
    ingest_dicom_forward: str = ""
    ingest_webhook_port: int = -1
    # Spanner's own listeners (spanning DIMSE SCP, DICOMweb); they start with the
    # process when spanner_start_listeners is set, else on StartListeners.
    spanner_dicom_port: int = SPANNER_DICOM_PORT
    spanner_dicom_ae_title: str = SPANNER_DICOM_AE_TITLE
    spanner_dicomweb_port: int = SPANNER_DICOMWEB_PORT
    spanner_start_listeners: bool = False

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under var/."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / (self.service + '.db')}"

    @property
    def listen_address(self) -> str:
        """host:port for the gRPC server to bind."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_tokens_file) and not self.auth_disabled

    def peer_address(self, service: str) -> str:
        """The address configured for another service."""
        return str(getattr(self, f"{service}_address"))


def _env_lookup(service: str, name: str, env: Mapping[str, str]) -> str | None:
    specific = f"CORRMESH_{service.upper()}_{name.upper()}"
    if specific in env:
        return env[specific]
    shared = f"CORRMESH_{name.upper()}"
    return env.get(shared)


def _as_bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds a flag for every setting, named like the field (``--database-url``)."""
    for f in fields(Settings):
        if f.name == "service":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=None)
        else:
            parser.add_argument(flag, default=None)


def load_settings(
    service: str,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra: argparse.ArgumentParser | None = None,
) -> Settings:
    """Builds Settings for ``service`` from flags, then environment, then defaults."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    env = os.environ if env is None else env
    parser = extra or argparse.ArgumentParser(prog=f"corrmesh serve {service}")
    add_arguments(parser)
    args, _unknown = parser.parse_known_args(argv)
    values: dict[str, object] = {"service": service}
    for f in fields(Settings):
        if f.name == "service":
            continue
        raw = getattr(args, f.name, None)
        if raw is None:
            raw = _env_lookup(service, f.name, env)
        if raw is None:
            continue
        values[f.name] = _convert(f.name, f.type, raw)
    if "port" not in values:
        values["port"] = DEFAULT_GRPC_PORTS[service]
    if service == "ingest":
        values.setdefault("ingest_dicom_port", INGEST_DICOM_PORT)
        values.setdefault("ingest_webhook_port", INGEST_WEBHOOK_PORT)
    return Settings(**values)  # type: ignore[arg-type]


def _convert(name: str, type_name: object, raw: object) -> object:
    if isinstance(raw, bool):
        return raw
    text = str(raw)
    try:
        if type_name in ("bool", bool):
            return _as_bool(text)
        if type_name in ("int", int):
            return int(text)
        if type_name in ("float", float):
            return float(text)
        if type_name in ("Path", Path):
            return Path(text)
    except ValueError as exc:
        raise SystemExit(f"invalid value for {name}: {text!r} ({exc})") from exc
    return text
