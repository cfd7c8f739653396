"""A real kube-apiserver with etcd on loopback, for Topology's real-server tier.

The binaries come from ``scripts/kube-apiserver.sh`` (built once from
Debian's kubernetes source and cached under ~/.cache/corrmesh). The server
runs with RBAC authorization, token authentication (an ``admin`` token in
system:masters, and tokens for users with no rights of their own), and the
watch cache off, so that compacting etcd makes an old resourceVersion
answer 410 Gone, as a busy cluster does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.topology_kube import write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube-apiserver.sh"
ADMIN_TOKEN = "admin-token"
#: Users with tokens and no rights until a test binds them a role.
USERS = {"topology": "topology-token", "narrow": "narrow-token"}


class ApiServerUnavailableError(RuntimeError):
    """The binaries could not be built or the server did not start."""


def free_ports(count: int) -> list[int]:
    """``count`` different free ports (held together while chosen, so no two match)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def binaries() -> Path:
    """The directory holding kube-apiserver, etcd and etcdctl (built if needed)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT), "build"], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise ApiServerUnavailableError(f"{BUILD_SCRIPT} failed: {result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _write_keys(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "sa.key"
    public = directory / "sa.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@dataclass
class ApiServer:
    """A running etcd + kube-apiserver pair."""

    directory: Path
    bin_dir: Path
    etcd_port: int
    port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.directory / "certs" / "apiserver.crt")

    def kubeconfig(self, user: str = "admin", name: str = "") -> Path:
        """A kubeconfig for ``user`` (admin, or one of USERS)."""
        token = ADMIN_TOKEN if user == "admin" else USERS[user]
        path = self.directory / f"kubeconfig-{user}{'-' + name if name else ''}"
        return write_kubeconfig(path, self.url, token, self.ca_file, name or "real")

    def etcd_revision(self) -> int:
        output = self._etcdctl("endpoint", "status", "-w", "json")
        return int(json.loads(output)[0]["Status"]["header"]["revision"])

    def compact(self) -> int:
        """Compacts etcd at its current revision; returns the revision."""
        revision = self.etcd_revision()
        self._etcdctl("compact", str(revision))
        return revision

    def _etcdctl(self, *args: str) -> str:
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(
            [
                str(self.bin_dir / "etcdctl"),
                f"--endpoints=http://127.0.0.1:{self.etcd_port}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=30,
        ).stdout

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()


def _wait_ready(server: ApiServer, timeout: float) -> None:
    request = urllib.request.Request(
        f"{server.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for process in server.processes:
            if process.poll() is not None:
                raise ApiServerUnavailableError(f"{process.args!r} exited: {process.returncode}")
        try:
            context = ssl.create_default_context(cafile=server.ca_file)
            context.check_hostname = False
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise ApiServerUnavailableError(f"kube-apiserver not ready in {timeout}s: {last}")


def start_apiserver(directory: Path, bin_dir: Path) -> ApiServer:
    """Starts etcd and kube-apiserver (RBAC, tokens, no watch cache) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "certs").mkdir(exist_ok=True)
    private, public = _write_keys(directory)
    tokens = directory / "tokens.csv"
    lines = [f'{ADMIN_TOKEN},admin,1,"system:masters"']
    lines += [f"{token},{user},{index + 2}" for index, (user, token) in enumerate(USERS.items())]
    tokens.write_text("\n".join(lines) + "\n", encoding="utf-8")
    etcd_port, port, peer_port = free_ports(3)
    server = ApiServer(directory, bin_dir, etcd_port, port)
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    etcd = [
        str(bin_dir / "etcd"),
        f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{server.etcd_port}",
        f"--advertise-client-urls=http://127.0.0.1:{server.etcd_port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
    ]
    apiserver = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{server.etcd_port}",
        f"--secure-port={server.port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--cert-dir={directory / 'certs'}",
        f"--token-auth-file={tokens}",
        "--anonymous-auth=false",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={public}",
        f"--service-account-signing-key-file={private}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--watch-cache=false",
    ]
    try:
        for name, command in (("etcd", etcd), ("kube-apiserver", apiserver)):
            with (logs / f"{name}.log").open("wb") as log:
                server.processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                )
        _wait_ready(server, 60)
    except BaseException:
        server.stop()
        raise
    return server


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
